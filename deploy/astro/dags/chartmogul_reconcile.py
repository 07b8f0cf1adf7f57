"""chartmogul_reconcile: compare what was synced with what ChartMogul holds

Written by `mogulflow dags --into DIR`. The DAG is defined in the installed mogulflow package
(mogulflow.airflow.dags): upgrading the package upgrades the DAG, this file stays as it is.
"""

from mogulflow.airflow.dags import chartmogul_reconcile

dag = chartmogul_reconcile()
