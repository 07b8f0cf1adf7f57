"""The local ChartMogul: a sandbox speaking the v1 API for tests, the demo and users.

``python -m mogulflow.sandbox --port 8999`` serves it; in tests, ``with SandboxServer() as sandbox``.
It stands apart from the pipeline: it imports nothing from mogulflow but itself, and no Airflow.
"""

from mogulflow.sandbox.faults import Faults
from mogulflow.sandbox.request_log import LoggedRequest
from mogulflow.sandbox.server import SandboxServer
from mogulflow.sandbox.settings import SandboxSettings, Strictness
from mogulflow.sandbox.state import SandboxState

__all__ = ["Faults", "LoggedRequest", "SandboxServer", "SandboxSettings", "SandboxState", "Strictness"]
