"""chartmogul_leads_trials: sync leads, plans and trial invoices from the warehouse to ChartMogul

Written by `mogulflow dags --into DIR`. The DAG is defined in the installed mogulflow package
(mogulflow.airflow.dags): upgrading the package upgrades the DAG, this file stays as it is.
"""

from mogulflow.airflow.dags import chartmogul_leads_trials

dag = chartmogul_leads_trials()
