"""`mogulflow sql --into DIR`: copy the default SQL into a folder of yours, to edit.

Then set `MOGULFLOW_SQL_DIR=DIR` for every Airflow component: a file there replaces the package's
file of the same name; delete the ones you do not change, and they keep coming from the package
(also after an upgrade that changes them).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from mogulflow.warehouse.sql_files import DEFAULT_SQL_DIR, SQL_DIR_ENV, default_sql_files


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow sql") -> int:
    """Copy the SQL files (or list them); an existing file is kept unless --force."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--into", type=Path, help=f"the folder to copy into (then set ${SQL_DIR_ENV} to it)")
    what.add_argument("--list", action="store_true", help="list the default SQL files and where they are")
    parser.add_argument("--force", action="store_true", help="replace files that exist in the folder")
    args = parser.parse_args(argv)
    if args.list:
        for relative in default_sql_files():
            print(DEFAULT_SQL_DIR / relative)
        return 0
    for relative in default_sql_files():
        target = args.into / relative
        if target.exists() and not args.force:
            print(f"{target}: kept (exists; --force replaces it)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEFAULT_SQL_DIR / relative, target)
        print(f"{target}: written")
    print(f"now set {SQL_DIR_ENV}={args.into.resolve()} for every Airflow component")
    return 0
