"""Validate deploy/helm/values.yaml against the official chart's values.schema.json.

    helm pull apache-airflow/airflow --untar      # or any copy of the chart's values.schema.json
    .venv/bin/python deploy/helm/check_values.py airflow/values.schema.json

Where `helm` is installed, `helm template airflow apache-airflow/airflow -f deploy/helm/values.yaml`
checks the same and renders the manifests. Exit 1 with each error when the values do not fit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml

VALUES = Path(__file__).with_name("values.yaml")


def errors(schema_path: Path, values_path: Path = VALUES) -> list[str]:
    """Every schema error of the values file, as `path: message`."""
    schema = json.loads(schema_path.read_text())
    values = yaml.safe_load(values_path.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    ]


if __name__ == "__main__":
    found = errors(Path(sys.argv[1]))
    print("\n".join(found) or f"{VALUES} fits {sys.argv[1]}")
    sys.exit(1 if found else 0)
