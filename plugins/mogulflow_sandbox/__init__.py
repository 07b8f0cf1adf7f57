"""The local ChartMogul: a sandbox speaking the v1 API for tests, the demo and users.

``python -m mogulflow_sandbox --port 8999`` serves it; in tests, ``with SandboxServer() as sandbox``.
It stands apart from the pipeline: it imports nothing from mogulflow but itself, and no Airflow.
"""

from mogulflow_sandbox.faults import Faults
from mogulflow_sandbox.request_log import LoggedRequest
from mogulflow_sandbox.server import SandboxServer
from mogulflow_sandbox.settings import SandboxSettings, Strictness
from mogulflow_sandbox.state import SandboxState

__all__ = ["Faults", "LoggedRequest", "SandboxServer", "SandboxSettings", "SandboxState", "Strictness"]
