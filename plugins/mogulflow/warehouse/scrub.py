"""Scrub: remove an erased lead's traces from mogulflow's own tables: its rows, and its values inside
the texts of other rows (a run's message and details, another row's reason).

Rows about the lead go whole (sync state, rejects, reconciliation, created objects); the audit keeps
its ids hashed; any other text column of mogulflow's tables has each value replaced wherever it appears.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from mogulflow.values.constants import (
    CREATED_TABLE,
    IDENTITY_SEPARATOR,
    RECONCILIATION_TABLE,
    REJECTS_TABLE,
    STATE_TABLE,
)
from mogulflow.values.deletions import ERASED_TEXT
from mogulflow.warehouse.connection import Warehouse
from mogulflow.warehouse.dialects import ColumnKind, declared_tables
from mogulflow.warehouse.own_tables import OWN_TABLES_FILE
from mogulflow.warehouse.sql_files import read_sql

# The tables whose rows are about one object, by the column naming it: an erased lead's rows go whole.
_ROWS_BY_ID = (
    (STATE_TABLE, "external_id"),
    (CREATED_TABLE, "external_id"),
    (REJECTS_TABLE, "source_id"),
    (RECONCILIATION_TABLE, "external_id"),
)
# Columns that hold mogulflow's own words and ids (runs, data sources, statuses), never a lead's values:
# a company named like a status must not rewrite them.
NEVER_SCRUBBED = frozenset(
    {"run_id", "dag_id", "data_source_uuid", "data_source_name", "entity", "status", "outcome", "kind"}
    | {"field", "content_hash", "decision"}
)
# A value shorter than this is replaced only in its quoted forms ('L1', "L1"): "L1" inside "L10" stays.
MIN_BARE_VALUE_LENGTH = 6


def drop_rows_about(warehouse: Warehouse, ids: Collection[str]) -> None:
    """Delete every row of the sync state, the created list, the rejects and the reconciliation that
    is about one of these ids (in any data source)."""
    for table, column in _ROWS_BY_ID:
        for external_id in ids:
            warehouse.execute(f"DELETE FROM {table} WHERE {column} = :id", {"id": external_id})
    # A lead's attributes and tags are kept by `lead_id/key` and `lead_id/tag` (SUBSTR, not LIKE: an id
    # may hold `%` or `_`).
    for external_id in ids:
        prefix = f"{external_id}{IDENTITY_SEPARATOR}"
        warehouse.execute(
            f"DELETE FROM {STATE_TABLE} WHERE entity IN ('attribute', 'tag') "
            "AND SUBSTR(external_id, 1, :length) = :prefix",
            {"length": len(prefix), "prefix": prefix},
        )


def replace_in_texts(warehouse: Warehouse, values: Iterable[str], *, ids: Collection[str] = ()) -> None:
    """Replace each value (and each id, in its quoted forms) in every text column of mogulflow's tables.

    Long values (an e-mail, a company name) are replaced wherever they appear; ids and short values
    only quoted, as JSON ("L1") and reasons ('L1') write them, so that another id containing them
    is left alone. Key columns are not touched (their rows went whole, or hold no personal data).
    """
    needles: set[str] = set()
    for value in {*values, *ids}:
        value = value.strip()
        if not value:
            continue
        needles.update({f'"{value}"', f"'{value}'"})
        if len(value) >= MIN_BARE_VALUE_LENGTH and value not in ids:
            needles.add(value)
    replacements = {
        needle: needle[0] + ERASED_TEXT + needle[-1] if needle[0] in "'\"" else ERASED_TEXT
        for needle in needles
    }
    for table in declared_tables(read_sql(OWN_TABLES_FILE)).values():
        for column in table.columns:
            if column.kind is not ColumnKind.TEXT or column.name in {*table.primary_key, *NEVER_SCRUBBED}:
                continue
            for needle in sorted(needles, key=len, reverse=True):
                warehouse.execute(
                    f"UPDATE {table.name} SET {column.name} = REPLACE({column.name}, :needle, :erased) "
                    f"WHERE {column.name} IS NOT NULL "
                    f"AND REPLACE({column.name}, :needle, '') <> {column.name}",
                    {"needle": needle, "erased": replacements[needle]},
                )
