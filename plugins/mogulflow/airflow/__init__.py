"""The Airflow edge, the one room that imports Airflow: hook, tasks, wait, alerts, lineage.

May import: every room of mogulflow but `monitor` and `cli`.
"""
