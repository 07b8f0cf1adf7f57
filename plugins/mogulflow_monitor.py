"""The monitoring page for an Airflow whose plugins folder is this repository's `plugins/` but which
has not installed the mogulflow package (its modules found on the plugins folder's path).

An installed mogulflow (wheel, or `make`'s editable install) registers the same plugin through its
`airflow.plugins` entry point, and Airflow would report a second plugin of the same name as an
import error ("already registered"): so this file defines the plugin only when no installed
mogulflow distribution provides that entry point. Airflow executes this file in every process;
it reads one distribution's metadata and imports Airflow's plugin base, nothing more.
"""

from __future__ import annotations

from importlib import metadata


def _installed_entry_point() -> bool:
    try:
        entry_points = metadata.distribution("mogulflow").entry_points
    except metadata.PackageNotFoundError:
        return False
    return any(entry.group == "airflow.plugins" for entry in entry_points)


if not _installed_entry_point():
    from mogulflow.monitor.plugin import MogulflowMonitorPlugin  # noqa: F401  (Airflow finds it here)
