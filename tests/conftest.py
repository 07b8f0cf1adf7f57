"""Test set-up shared by the whole suite.

Airflow reads its configuration when first imported, so the environment is set here, at the top,
before any test module can import it: a throwaway AIRFLOW_HOME with its own SQLite metadata DB,
this repository's dags/ and plugins/, no examples.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mogulflow-airflow-"))

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["MOGULFLOW_STAGING_DIR"] = str(_AIRFLOW_HOME / "staging")
os.environ.setdefault("MOGULFLOW_TASK_RETRIES", "0")
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The suite's throwaway AIRFLOW_HOME."""
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """A migrated Airflow metadata DB (needed by dag.test()) with the chartmogul_api pool."""
    from airflow.utils import db

    db.resetdb()
    from mogulflow.airflow_resources import ensure_pool

    ensure_pool()
    return airflow_home / "airflow.db"


@pytest.fixture
def sandbox() -> Iterator:
    """A fresh ChartMogul sandbox served over real HTTP on a free loopback port."""
    from mogulflow.sandbox import SandboxServer

    with SandboxServer(port=0) as server:
        yield server
