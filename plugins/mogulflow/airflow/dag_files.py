"""The thin DAG files `mogulflow dags --into DIR` writes (and the repository's `dags/` holds).

Each imports one function of `mogulflow.airflow.dags` and calls it: the DAG is defined in the
installed package, so the file stays valid when the package is upgraded. Writing them builds no DAG.
"""

from __future__ import annotations

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
