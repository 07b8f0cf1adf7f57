"""Warehouse: the SQL warehouse: connection, dialects, SQL files, mogulflow's tables, staging.

May import: `mogulflow.values`. Never the ChartMogul transport, a step, or Airflow.
"""
