"""mogulflow's three DAGs, defined once in the package. A DAG file in Airflow's DAGs folder builds one
by calling its function; `mogulflow dags --into DIR` writes those files (`DAG_FILES`), and the
repository's `dags/` holds the same ones. The files name only these three functions, so an upgrade
of mogulflow changes the DAGs without touching them.
"""

from __future__ import annotations

from mogulflow.airflow.dags.leads_trials import chartmogul_leads_trials
from mogulflow.airflow.dags.merge_converted_leads import chartmogul_merge_converted_leads
from mogulflow.airflow.dags.reconcile import chartmogul_reconcile

__all__ = ["DAG_FILES", "chartmogul_leads_trials", "chartmogul_merge_converted_leads", "chartmogul_reconcile"]

_THIN_FILE = '''"""{dag_id}: {summary}

Written by `mogulflow dags --into DIR`. The DAG is defined in the installed mogulflow package
(mogulflow.airflow.dags): upgrading the package upgrades the DAG, this file stays as it is.
"""

from mogulflow.airflow.dags import {dag_id}

dag = {dag_id}()
'''

_SUMMARIES = {
    "chartmogul_leads_trials": "sync leads, plans and trial invoices from the warehouse to ChartMogul",
    "chartmogul_merge_converted_leads": "merge converted leads into their paying customers",
    "chartmogul_reconcile": "compare what was synced with what ChartMogul holds",
}

#: File name → content of the thin DAG files (Airflow's DAGs folder: `mogulflow dags --into DIR`).
DAG_FILES: dict[str, str] = {
    f"{dag_id}.py": _THIN_FILE.format(dag_id=dag_id, summary=summary)
    for dag_id, summary in _SUMMARIES.items()
}
