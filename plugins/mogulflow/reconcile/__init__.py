"""Reconcile: compare what mogulflow synced with what ChartMogul holds; never write to it.

May import: `mogulflow.sync` and the rooms below it. Never Airflow, never `mogulflow.merge`.
"""
