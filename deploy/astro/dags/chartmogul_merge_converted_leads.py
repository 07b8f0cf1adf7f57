"""chartmogul_merge_converted_leads: merge converted leads into their paying customers

Written by `mogulflow dags --into DIR`. The DAG is defined in the installed mogulflow package
(mogulflow.airflow.dags): upgrading the package upgrades the DAG, this file stays as it is.
"""

from mogulflow.airflow.dags import chartmogul_merge_converted_leads

dag = chartmogul_merge_converted_leads()
