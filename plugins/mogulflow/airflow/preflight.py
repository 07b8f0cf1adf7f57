"""The preflight against Airflow's connections, for the `preflight` task and `mogulflow preflight`.

The preflight against Airflow's connections: the `preflight` task and `mogulflow preflight` run
the Airflow-free check (`mogulflow.sync.preflight`) with the warehouse and the client these open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mogulflow.sync.preflight import PING_RETRY, PreflightReport, check_setup
from mogulflow.values.constants import CHARTMOGUL_CONN_ID, WAREHOUSE_CONN_ID
from mogulflow.values.entities import Entity


def airflow_checks(
    entities: Sequence[Entity],
    *,
    warehouse_conn_id: str = WAREHOUSE_CONN_ID,
    chartmogul_conn_id: str = CHARTMOGUL_CONN_ID,
) -> PreflightReport:
    """The preflight against the Airflow connections (the task, and the command line)."""
    from mogulflow.airflow.hook import ChartMogulHook
    from mogulflow.airflow.resources import open_warehouse
    from mogulflow.chartmogul.client import ChartMogulClient

    def ping() -> bool:
        settings = ChartMogulHook(chartmogul_conn_id=chartmogul_conn_id).get_client_settings()
        with ChartMogulClient.from_settings(dataclasses.replace(settings, retry=PING_RETRY)) as client:
            return client.ping()

    return check_setup(
        entities,
        open_warehouse=lambda: open_warehouse(warehouse_conn_id),
        ping=ping,
        warehouse_conn_id=warehouse_conn_id,
        chartmogul_conn_id=chartmogul_conn_id,
    )
