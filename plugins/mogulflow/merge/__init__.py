"""Merge: the steps of `chartmogul_merge_converted_leads`, each lead into its paying customer.

May import: `mogulflow.sync` and the rooms below it. Never Airflow, never `mogulflow.reconcile`.
"""
