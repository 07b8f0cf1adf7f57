"""mogulflow's three DAGs, defined once in the package: a thin DAG file builds each by calling it.

`mogulflow dags --into DIR` writes those files (`mogulflow.airflow.dag_files`), and the repository's
`dags/` holds the same ones. The files name only these three functions, so an upgrade of mogulflow
changes the DAGs without touching them.
"""

from __future__ import annotations

from mogulflow.airflow.dags.leads_trials import chartmogul_leads_trials
from mogulflow.airflow.dags.merge_converted_leads import chartmogul_merge_converted_leads
from mogulflow.airflow.dags.reconcile import chartmogul_reconcile

__all__ = ["chartmogul_leads_trials", "chartmogul_merge_converted_leads", "chartmogul_reconcile"]
