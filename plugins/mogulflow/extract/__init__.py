"""Extract: read each entity's source rows for a run's window, with the SQL in `include/sql/`.

May import: `mogulflow.warehouse`, `mogulflow.values`.
"""
