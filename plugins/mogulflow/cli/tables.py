"""`mogulflow tables DIALECT`: print mogulflow's own tables as that warehouse's DDL."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mogulflow.warehouse.dialects import DIALECTS, render_script
from mogulflow.warehouse.sql_files import read_sql


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow tables") -> int:
    """Print mogulflow's tables (or another neutral SQL file) in one warehouse's own types."""
    parser = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    parser.add_argument("dialect", choices=sorted(DIALECTS))
    parser.add_argument("--file", default="mogulflow_tables.sql", help="a file of the SQL folder")
    args = parser.parse_args(argv)
    for statement in render_script(read_sql(args.file), DIALECTS[args.dialect]):
        print(f"{statement};\n")
    return 0
