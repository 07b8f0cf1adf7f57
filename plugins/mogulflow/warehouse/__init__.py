"""Warehouse: the SQL warehouse as mogulflow sees it: connection and dialect, the SQL files, its own
tables (runs, rejects, sync state) and the staged parts one task hands the next.

May import: `mogulflow.values`. Never the ChartMogul transport, a step, or Airflow."""
