"""Reconcile: does ChartMogul still hold what mogulflow synced? Read both sides, compare, record
the differences, mark them for re-sending; never write to ChartMogul.

May import: `mogulflow.sync` and the rooms below it. Never Airflow, never `mogulflow.merge`."""
