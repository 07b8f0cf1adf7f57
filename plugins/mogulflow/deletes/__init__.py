"""Deletes: mirror what left the warehouse and erase leads on request, only ever what mogulflow created.

May import: `mogulflow.sync` and the rooms below it. Never Airflow, never `merge` or `reconcile`.
"""
