"""Sync: the run of `chartmogul_leads_trials` (extract → validate → transform → plan → load →
record, wired per entity), and the preflight check of a whole setup.

May import: every step room and the rooms below them. Never Airflow."""
