"""Extract: read each entity's source rows for a run's window, with the SQL in `mogulflow/sql/`.

May import: `mogulflow.warehouse`, `mogulflow.values`.
"""
