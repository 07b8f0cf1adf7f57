"""`make settings-table`: write `mogulflow settings`' table into README.md between its markers."""

from __future__ import annotations

import re
from pathlib import Path

from mogulflow.cli.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- settings:start[^\n]*-->\n)(.*?)(<!-- settings:end -->)", re.DOTALL)


def main() -> None:
    text = README.read_text()
    if not BLOCK.search(text):
        raise SystemExit("README.md has no <!-- settings:start --> ... <!-- settings:end --> block")
    README.write_text(BLOCK.sub(lambda m: m[1] + markdown_table() + m[3], text))
    print(f"wrote the settings table into {README}")


if __name__ == "__main__":
    main()
