"""Merge: the steps of `chartmogul_merge_converted_leads`: read the conversions, find the paying
customers billing integrations create, merge each lead into its paying customer once.

May import: `mogulflow.sync` and the rooms below it. Never Airflow, never `mogulflow.reconcile`."""
