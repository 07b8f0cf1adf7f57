"""Data sources: find (and, for the leads DAG, create) the ChartMogul data source a run writes into."""

from __future__ import annotations

import logging

from mogulflow.chartmogul.client import ChartMogulClient

log = logging.getLogger(__name__)


def find_data_source(client: ChartMogulClient, name: str) -> str | None:
    """The uuid of the custom data source called `name`, or None."""
    for source in client.list_data_sources(name=name):
        if source.get("name") == name:
            return str(source["uuid"])
    return None


def ensure_data_source(client: ChartMogulClient, name: str, *, dry_run: bool) -> str | None:
    """The uuid of the custom data source called `name`, created if missing (not in a dry run)."""
    found = find_data_source(client, name)
    if found is not None:
        return found
    if dry_run:
        log.info("Dry run: data source %r does not exist yet and would be created.", name)
        return None
    created = client.create_data_source(name)
    log.info("Created ChartMogul data source %r (%s).", name, created["uuid"])
    return str(created["uuid"])
