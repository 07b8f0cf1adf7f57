"""README's performance table is the one `make bench` wrote last (bench/bench_table.py writes both)."""

from __future__ import annotations

import re

from repo_paths import REPO


def test_the_readme_performance_table_is_the_benchs_last_one():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- bench:start[^\n]*-->\n(.*?)<!-- bench:end -->", readme, re.DOTALL)
    assert block, "README.md lost its bench block"
    results = (REPO / "docs" / "bench-results.md").read_text()
    assert results == "# Benchmark results\n\n" + block[1], (
        "README's performance table differs from docs/bench-results.md: run `make bench` "
        "(or `.venv/bin/python bench/bench_table.py FOLDER` on its figures)"
    )
