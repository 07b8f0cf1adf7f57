"""The request flows: every endpoint's logic written once, for the sync and the async client alike.

A flow is a generator that yields what it needs done (`Call`: an HTTP request, `Pause`: a wait)
and receives the decoded JSON answer, or has the request's `ChartMogulError` thrown into it. It
never touches a socket or a clock's sleep, so the idempotency rules (look up before re-sending a
create whose answer was lost, "already exists" means done) cannot drift apart between the clients.
Invoice and bulk-import flows live in `invoices` and `bulk`; `attempts` runs what flows yield.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from mogulflow.chartmogul.errors import ChartMogulError, NotFoundError, TransientError, ValidationError
from mogulflow.chartmogul.retry import RetryPolicy
from mogulflow.values.field_equality import changed_fields

log = logging.getLogger(__name__)

#: ChartMogul's page size cap; larger values are silently treated as 200.
MAX_PER_PAGE = 200

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# What a flow yields, and what it returns


@dataclass(frozen=True)
class Call:
    """One HTTP request. `replay_safe=False` for creates: after an ambiguous failure (the server
    may have acted) the executor hands the failure back to the flow instead of re-sending."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    replay_safe: bool = True


@dataclass(frozen=True)
class Pause:
    """A wait between two steps of a flow (a backoff, or a poll interval)."""

    seconds: float


#: A request flow: yields calls and pauses, receives JSON answers, returns a `T`.
Flow = Generator[Call | Pause, Any, T]
#: A lookup run after a create's answer was lost: the object if it landed, else None.
Finder = Callable[[], Flow[dict[str, Any] | None]]


@dataclass(frozen=True)
class WriteOutcome:
    """What an upsert did: the object's uuid, whether we created it, whether we PATCHed it, its body."""

    uuid: str
    created: bool
    updated: bool
    body: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class CreateAnswer:
    """How a create ended: the object, whether we created it, whether it came from a lookup."""

    body: dict[str, Any]
    created: bool
    found: bool


@dataclass(frozen=True)
class ObjectKind:
    """A collection addressable by (data_source_uuid, external_id)."""

    name: str
    collection: str
    list_key: str
    #: Keys never PATCHed: they identify the object, or (attributes) come back in another shape.
    not_patched: frozenset[str] = frozenset({"data_source_uuid", "external_id"})

    def pages(self, data_source_uuid: str | None, external_id: str | None, per_page: int) -> Pages:
        """The listing of this collection, filtered on what is given."""
        given = filters(data_source_uuid=data_source_uuid, external_id=external_id)
        return Pages(self.collection, self.list_key, given, per_page)


CUSTOMERS = ObjectKind(
    "customer",
    "/v1/customers",
    "entries",
    # `attributes.custom` is a list on create and a map on update/read: not comparable field-wise.
    frozenset({"data_source_uuid", "external_id", "attributes"}),
)
PLANS = ObjectKind("plan", "/v1/plans", "plans")
INVOICES = ObjectKind("invoice", "/v1/invoices", "invoices")


@dataclass(frozen=True)
class Pages:
    """A cursor-paginated listing: where it is, which key holds the entries, with which filters."""

    path: str
    list_key: str
    filters: Mapping[str, Any] = field(default_factory=dict)
    per_page: int = MAX_PER_PAGE

    def first_query(self) -> dict[str, Any]:
        """The query of the first page (the page size capped at what the API serves)."""
        return {**self.filters, "per_page": min(self.per_page, MAX_PER_PAGE)}


#: A page's entries and the query of the next page (None after the last one).
PageAnswer = tuple[list[dict[str, Any]], dict[str, Any] | None]


# --------------------------------------------------------------------------------------------
# Reads


def ping() -> Flow[bool]:
    """GET /v1/ping: True when the API answers "pong!"."""
    body = yield Call("GET", "/v1/ping")
    return isinstance(body, Mapping) and body.get("data") == "pong!"


def list_data_sources(name: str | None) -> Flow[list[dict[str, Any]]]:
    """GET /v1/data_sources, only those named `name` when given."""
    body = yield Call("GET", "/v1/data_sources", params={"name": name} if name else None)
    sources = list(body.get("data_sources") or [])
    # Filter locally too: not every server honours the `name` filter.
    return [s for s in sources if name is None or s.get("name") == name]


def get_object(kind: ObjectKind, uuid: str) -> Flow[dict[str, Any]]:
    """GET one object of `kind` by uuid."""
    body = yield Call("GET", f"{kind.collection}/{segment(uuid)}")
    return dict(body)


def page(pages: Pages, query: Mapping[str, Any]) -> Flow[PageAnswer]:
    """One page of a listing: its entries and the next page's query."""
    body = yield Call("GET", pages.path, params=query)
    return list(body.get(pages.list_key) or []), next_page_query(query, body)


def first_match(pages: Pages, matches: Callable[[Mapping[str, Any]], bool]) -> Flow[dict[str, Any] | None]:
    """The first entry of a listing that `matches`, or None once the last page is read."""
    query: dict[str, Any] | None = pages.first_query()
    while query is not None:
        entries, query = yield from page(pages, query)
        for entry in entries:
            if matches(entry):
                return dict(entry)
    return None


def search_customers(email: str) -> Flow[list[dict[str, Any]]]:
    """GET /v1/customers/search?email=, every page ([] when none)."""
    found: list[dict[str, Any]] = []
    search = Pages("/v1/customers/search", "entries", {"email": email})
    query: dict[str, Any] | None = search.first_query()
    while query is not None:
        try:
            entries, query = yield from page(search, query)
        except NotFoundError:
            # ChartMogul answers "no match" with a 404 (node issue #25): that is an empty result.
            return found
        found.extend(entries)
    return found


def find_object(kind: ObjectKind, payload: Mapping[str, Any]) -> Flow[dict[str, Any] | None]:
    """The object of `kind` with the payload's data source and external id, or None."""
    data_source_uuid = payload.get("data_source_uuid")
    external_id = payload.get("external_id")
    if not data_source_uuid or external_id is None:
        raise ValueError(f"a {kind.name} lookup needs data_source_uuid and external_id")
    key = {"data_source_uuid": data_source_uuid, "external_id": external_id}
    return (
        yield from first_match(
            Pages(kind.collection, kind.list_key, key),
            lambda entry: is_same_object(entry, str(data_source_uuid), str(external_id)),
        )
    )


# --------------------------------------------------------------------------------------------
# Writes


def create_once(
    policy: RetryPolicy,
    what: str,
    path: str,
    payload: Mapping[str, Any],
    find: Finder,
    *,
    adopt_existing: bool,
) -> Flow[CreateAnswer]:
    """POST a create at most once in effect.

    After an ambiguous failure (5xx, timeout or dropped connection once the request was
    sent) the object may exist: look it up and only re-send if it is absent. An "already
    exists" 422 after such a failure is our own earlier write; without one it means someone
    (an earlier run) created it, which `adopt_existing` accepts and otherwise re-raises.
    """
    waits = policy.waits()
    started = time.monotonic()
    maybe_landed = False
    last_error: ChartMogulError | None = None
    for _attempt in range(policy.max_attempts):
        try:
            body = yield Call("POST", path, body=dict(payload), replay_safe=False)
            return CreateAnswer(dict(body), created=True, found=False)
        except ValidationError as error:
            if not error.already_exists or not (adopt_existing or maybe_landed):
                raise
            existing = yield from find()
            if existing is None:
                # Said "exists" but cannot be found: report the API's own words, not a guess.
                raise
            return CreateAnswer(existing, created=maybe_landed, found=True)
        except TransientError as error:
            if not error.maybe_applied:
                raise
            maybe_landed = True
            last_error = error
            existing = yield from find()
            if existing is not None:
                log.info("%s create answered %s but it landed; using it", what, error.status or "no answer")
                return CreateAnswer(existing, created=True, found=True)
        if time.monotonic() - started > policy.max_elapsed:
            break
        yield Pause(next(waits))
    assert last_error is not None
    raise TransientError(
        f"{what} create kept failing and the object is not there: {last_error.message}",
        status=last_error.status,
        method="POST",
        path=path,
    )


def create_data_source(policy: RetryPolicy, name: str) -> Flow[dict[str, Any]]:
    """POST /v1/data_sources once in effect; a lost answer is settled by looking the name up."""

    def find() -> Flow[dict[str, Any] | None]:
        found = yield from list_data_sources(name)
        return found[0] if found else None

    answer = yield from create_once(
        policy, "data source", "/v1/data_sources", {"name": name}, find, adopt_existing=False
    )
    return answer.body


def create_object(policy: RetryPolicy, kind: ObjectKind, payload: Mapping[str, Any]) -> Flow[dict[str, Any]]:
    """POST an object of `kind` once in effect; "already exists" is raised, not adopted."""
    answer = yield from create_once(
        policy, kind.name, kind.collection, payload, lambda: find_object(kind, payload), adopt_existing=False
    )
    return answer.body


def update_object(kind: ObjectKind, uuid: str, fields: Mapping[str, Any]) -> Flow[dict[str, Any]]:
    """PATCH an object of `kind` with `fields`; the updated object."""
    # PATCH sets fields to given values: replaying it is harmless, so the executor may retry it.
    body = yield Call("PATCH", f"{kind.collection}/{segment(uuid)}", body=dict(fields))
    return dict(body)


def upsert(policy: RetryPolicy, kind: ObjectKind, payload: Mapping[str, Any]) -> Flow[WriteOutcome]:
    """Create the object, or adopt the one with its external id and PATCH the fields that differ."""
    answer = yield from create_once(
        policy, kind.name, kind.collection, payload, lambda: find_object(kind, payload), adopt_existing=True
    )
    uuid = str(answer.body["uuid"])
    # A 201 body is the server's echo of what we sent (it normalises some fields, e.g. dates);
    # only an object we found (an earlier run's, or ours after a lost answer) needs a diff.
    changes = changed_fields(answer.body, payload, skip=kind.not_patched) if answer.found else {}
    if not changes:
        return WriteOutcome(uuid=uuid, created=answer.created, updated=False, body=answer.body)
    body = yield from update_object(kind, uuid, changes)
    return WriteOutcome(uuid=uuid, created=answer.created, updated=True, body=body or answer.body)


def merge_customers(from_: str | Mapping[str, Any], into: str | Mapping[str, Any]) -> Flow[None]:
    """POST /v1/customers/merges: merge `from_` into `into`."""
    yield Call("POST", "/v1/customers/merges", body={"from": customer_ref(from_), "into": customer_ref(into)})
    return None


# --------------------------------------------------------------------------------------------
# Small pure helpers


def delete_object(policy: RetryPolicy, kind: ObjectKind, uuid: str) -> Flow[None]:
    """DELETE one object by uuid, retrying outages; a 404 raises `NotFoundError`, even after an attempt
    whose answer was lost: only a lookup can tell "our lost attempt deleted it" from "someone else did"
    or "the uuid was wrong", so the caller looks the object up (`mogulflow.deletes`)."""
    path = f"{kind.collection}/{segment(uuid)}"
    waits = policy.waits()
    for _attempt in range(policy.max_attempts):
        try:
            yield Call("DELETE", path, replay_safe=False)
            return None
        except TransientError as error:
            if not error.maybe_applied:
                raise  # the attempts already retried what surely did not land
            yield Pause(next(waits))
    raise TransientError(f"{kind.name} delete kept failing", method="DELETE", path=path)


def is_same_object(entry: Mapping[str, Any], data_source_uuid: str, external_id: str) -> bool:
    """True when a listed entry is the object with this data source and external id."""
    # A merged customer carries several data sources and external ids; any pair may identify it.
    sources = {entry.get("data_source_uuid"), *(entry.get("data_source_uuids") or [])}
    ids = {entry.get("external_id"), *(entry.get("external_ids") or [])}
    return data_source_uuid in sources and external_id in {str(i) for i in ids if i is not None}


def next_page_query(query: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The query of the page after the one `body` answered, or None when that was the last."""
    # `has_more` decides, not the cursor: a finished search once came back with a non-null cursor.
    if not body.get("has_more") or not body.get("cursor"):
        return None
    if body["cursor"] == query.get("cursor"):
        return None  # a server that ignores the cursor would hand out the same page forever
    return {**query, "cursor": body["cursor"]}


def filters(**given: str | None) -> dict[str, str]:
    """The listing filters that were given (None means "do not filter on it")."""
    return {key: value for key, value in given.items() if value is not None}


def segment(value: str) -> str:
    """A value quoted as one URL path segment (a uuid or an id can never add a path level)."""
    return quote(str(value), safe="")


def customer_ref(ref: str | Mapping[str, Any]) -> dict[str, Any]:
    """A merge side: a customer uuid, or {data_source_uuid, external_id} as given."""
    return {"customer_uuid": ref} if isinstance(ref, str) else dict(ref)
