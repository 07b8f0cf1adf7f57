"""Sync: `chartmogul_leads_trials`, the steps wired per entity; and the preflight of a setup.

May import: every step room and the rooms below them. Never Airflow.
"""
