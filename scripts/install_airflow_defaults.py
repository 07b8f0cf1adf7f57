"""Make the venv's Airflow find this project without any environment set-up.

Writes `mogulflow_airflow_defaults.pth` into the venv's site-packages: at interpreter start it sets
AIRFLOW_HOME (var/airflow), the dags and plugins folders (this repository's) and turns the example
DAGs off, each only when the variable is not already set. So `.venv/bin/airflow dags test ...`
works from a fresh clone after `make`, and anyone who sets these variables keeps full control.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = {
    "AIRFLOW_HOME": REPO / "var" / "airflow",
    "AIRFLOW__CORE__DAGS_FOLDER": REPO / "dags",
    "AIRFLOW__CORE__PLUGINS_FOLDER": REPO / "plugins",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
}


def main() -> None:
    """Write the .pth file (one line: site.py executes lines that start with `import`)."""
    statements = "; ".join(
        f"os.environ.setdefault({name!r}, {str(value)!r})" for name, value in DEFAULTS.items()
    )
    target = Path(sysconfig.get_paths()["purelib"]) / "mogulflow_airflow_defaults.pth"
    target.write_text(f"import os; {statements}\n")
    Path(DEFAULTS["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
