"""Extract: read one entity's source rows for a run's window with the SQL in `mogulflow/sql/`, and
hold back the rows still waiting for their lead or plan.

May import: `mogulflow.warehouse`, `mogulflow.values`."""
