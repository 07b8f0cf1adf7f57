"""`mogulflow dags --into DIR`: write mogulflow's three DAG files into Airflow's DAGs folder.

Each file is three lines of wiring that build the DAG defined in the installed package, so the
files stay valid across upgrades: upgrade the package, keep the files.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mogulflow.airflow.dag_files import DAG_FILES


def write_dag_files(folder: Path, *, force: bool = False) -> dict[str, str]:
    """Write the DAG files into `folder`; return what happened to each: written, unchanged or kept.

    A file of the same name whose content differs (edited by hand, or not mogulflow's) is kept
    unless `force`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    outcome = {}
    for name, content in DAG_FILES.items():
        target = folder / name
        if target.is_file() and target.read_text() == content:
            outcome[name] = "unchanged"
        elif target.exists() and not force:
            outcome[name] = "kept (differs; --force replaces it)"
        else:
            target.write_text(content)
            outcome[name] = "written"
    return outcome


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow dags") -> int:
    """Write the DAG files; exit 1 when a differing file was kept."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    parser.add_argument("--into", required=True, type=Path, help="Airflow's DAGs folder ([core] dags_folder)")
    parser.add_argument("--force", action="store_true", help="replace files of the same name that differ")
    args = parser.parse_args(argv)
    outcome = write_dag_files(args.into, force=args.force)
    for name, what in outcome.items():
        print(f"{args.into / name}: {what}")
    return 1 if any(what.startswith("kept") for what in outcome.values()) else 0
