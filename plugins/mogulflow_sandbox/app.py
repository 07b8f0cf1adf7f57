"""The HTTP routes: ChartMogul's ``/v1`` endpoints over `SandboxState`, and the ``/_sandbox`` controls.

Handlers are thin: read the request, call the state, answer with its status and JSON. Errors are
`ApiError`s rendered with their exact body. `build_app` wraps the routes in the `ApiGateway`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from mogulflow_sandbox import bulk
from mogulflow_sandbox.api_errors import ApiError, coded_error
from mogulflow_sandbox.faults import FaultInjector, Faults
from mogulflow_sandbox.gateway import ApiGateway
from mogulflow_sandbox.pagination import read_page_request
from mogulflow_sandbox.request_log import RequestLog
from mogulflow_sandbox.state import SandboxState

Handler = Callable[[Request], Awaitable[Response]]


def build_app(
    state: SandboxState, injector: FaultInjector, request_log: RequestLog, api_key: str | None
) -> ASGIApp:
    """The whole sandbox as one ASGI app (the gateway must stay outermost: it may drop connections)."""
    routes = _api_routes(state) + _control_routes(state, injector, request_log)
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: _render_api_error, HTTPException: _render_http_exception},
    )
    return ApiGateway(app, injector, request_log, api_key)


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def _no_content() -> Response:
    return Response(status_code=204)


async def _render_api_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return _json(error.body, error.status)


async def _render_http_exception(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = "Not found" if error.status_code == 404 else str(error.detail)
    return _json({"code": error.status_code, "message": message, "param": None}, error.status_code)


async def _read_object(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}``, anything but an object is a 400."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise coded_error(400, "The request body is not valid JSON", None) from None
    if not isinstance(body, dict):
        raise coded_error(400, "The request body must be a JSON object", None)
    return body


def _query(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value else None


def _filters(request: Request, *names: str) -> dict[str, str | None]:
    """The list filters of a request by name; an empty parameter counts as absent."""
    return {name: _query(request, name) for name in names}


def _api_routes(state: SandboxState) -> list[Route]:
    async def ping(_: Request) -> Response:
        return _json({"data": "pong!"})

    async def create_data_source(request: Request) -> Response:
        body = await _read_object(request)
        return _json(state.create_data_source(body.get("name")), 201)

    async def list_data_sources(request: Request) -> Response:
        found = state.list_data_sources(name=_query(request, "name"), system=_query(request, "system"))
        return _json({"data_sources": found})

    async def get_data_source(request: Request) -> Response:
        return _json(state.get_data_source(request.path_params["uuid"]))

    async def delete_data_source(request: Request) -> Response:
        state.delete_data_source(request.path_params["uuid"])
        return _no_content()

    async def create_json_import(request: Request) -> Response:
        bulk.check_payload_size(len(await request.body()))
        body = await _read_object(request)
        return _json(state.create_json_import(request.path_params["uuid"], body), 201)

    async def get_json_import(request: Request) -> Response:
        return _json(state.get_json_import(request.path_params["uuid"], request.path_params["import_id"]))

    async def create_customer(request: Request) -> Response:
        return _json(state.create_customer_from_body(await _read_object(request)), 201)

    async def list_customers(request: Request) -> Response:
        filters = _filters(request, "data_source_uuid", "external_id", "status", "system")
        return _json(state.list_customers_page(read_page_request(request.query_params), **filters))

    async def search_customers(request: Request) -> Response:
        page_request = read_page_request(request.query_params)
        email = _query(request, "email")
        if email is None:
            raise coded_error(400, 'Parameter "email" is missing', "email")
        return _json(state.search_customers_page(email, page_request))

    async def merge_customers(request: Request) -> Response:
        state.request_merge(await _read_object(request))
        return _json({}, 202)

    async def unmerge_customers(request: Request) -> Response:
        state.request_unmerge(await _read_object(request))
        return _json({}, 202)

    async def get_customer(request: Request) -> Response:
        return _json(state.get_customer(request.path_params["uuid"]))

    async def update_customer(request: Request) -> Response:
        return _json(state.update_customer(request.path_params["uuid"], await _read_object(request)))

    async def delete_customer(request: Request) -> Response:
        state.delete_customer(request.path_params["uuid"])
        return _no_content()

    def customer_attributes(action: str, status: int = 200) -> Handler:
        async def handle(request: Request) -> Response:
            body = {} if action == "get" else await _read_object(request)
            return _json(state.customer_attributes(request.path_params["uuid"], action, body), status)

        return handle

    async def create_plan(request: Request) -> Response:
        return _json(state.create_plan(await _read_object(request)), 201)

    async def list_plans(request: Request) -> Response:
        filters = _filters(request, "data_source_uuid", "external_id", "system")
        return _json(state.list_plans_page(read_page_request(request.query_params), **filters))

    async def get_plan(request: Request) -> Response:
        return _json(state.get_plan(request.path_params["uuid"]))

    async def update_plan(request: Request) -> Response:
        return _json(state.update_plan(request.path_params["uuid"], await _read_object(request)), 202)

    async def delete_plan(request: Request) -> Response:
        state.delete_plan(request.path_params["uuid"])
        return _no_content()

    async def import_invoices(request: Request) -> Response:
        status, body = state.import_invoices(request.path_params["uuid"], await _read_object(request))
        return _json(body, status)

    async def list_customer_invoices(request: Request) -> Response:
        page_request = read_page_request(request.query_params)
        return _json(state.list_customer_invoices_page(request.path_params["uuid"], page_request))

    async def add_line_item(request: Request) -> Response:
        return _json(state.add_line_item(request.path_params["uuid"], await _read_object(request)), 201)

    async def list_invoices(request: Request) -> Response:
        filters = _filters(request, "customer_uuid", "data_source_uuid", "external_id")
        return _json(state.list_invoices_page(read_page_request(request.query_params), **filters))

    async def get_invoice(request: Request) -> Response:
        return _json(state.get_invoice(request.path_params["uuid"]))

    async def delete_invoice(request: Request) -> Response:
        state.delete_invoice(request.path_params["uuid"])
        return _no_content()

    return [
        Route("/v1/ping", ping, methods=["GET"]),
        Route("/v1/data_sources", list_data_sources, methods=["GET"]),
        Route("/v1/data_sources", create_data_source, methods=["POST"]),
        Route("/v1/data_sources/{uuid}", get_data_source, methods=["GET"]),
        Route("/v1/data_sources/{uuid}", delete_data_source, methods=["DELETE"]),
        Route("/v1/data_sources/{uuid}/json_imports", create_json_import, methods=["POST"]),
        Route("/v1/data_sources/{uuid}/json_imports/{import_id}", get_json_import, methods=["GET"]),
        Route("/v1/customers", list_customers, methods=["GET"]),
        Route("/v1/customers", create_customer, methods=["POST"]),
        Route("/v1/customers/search", search_customers, methods=["GET"]),
        Route("/v1/customers/merges", merge_customers, methods=["POST"]),
        Route("/v1/customers/unmerges", unmerge_customers, methods=["POST"]),
        Route("/v1/customers/{uuid}", get_customer, methods=["GET"]),
        Route("/v1/customers/{uuid}", update_customer, methods=["PATCH", "PUT"]),
        Route("/v1/customers/{uuid}", delete_customer, methods=["DELETE"]),
        Route("/v1/customers/{uuid}/attributes", customer_attributes("get"), methods=["GET"]),
        Route("/v1/customers/{uuid}/attributes/custom", customer_attributes("add_custom"), methods=["POST"]),
        Route(
            "/v1/customers/{uuid}/attributes/custom", customer_attributes("update_custom"), methods=["PUT"]
        ),
        Route(
            "/v1/customers/{uuid}/attributes/custom",
            customer_attributes("remove_custom", 202),
            methods=["DELETE"],
        ),
        Route("/v1/customers/{uuid}/attributes/tags", customer_attributes("add_tags"), methods=["POST"]),
        Route("/v1/customers/{uuid}/attributes/tags", customer_attributes("remove_tags"), methods=["DELETE"]),
        Route("/v1/plans", list_plans, methods=["GET"]),
        Route("/v1/plans", create_plan, methods=["POST"]),
        Route("/v1/plans/{uuid}", get_plan, methods=["GET"]),
        Route("/v1/plans/{uuid}", update_plan, methods=["PATCH"]),
        Route("/v1/plans/{uuid}", delete_plan, methods=["DELETE"]),
        Route("/v1/import/customers/{uuid}/invoices", list_customer_invoices, methods=["GET"]),
        Route("/v1/import/customers/{uuid}/invoices", import_invoices, methods=["POST"]),
        Route("/v1/import/invoices/{uuid}/line_items", add_line_item, methods=["POST"]),
        Route("/v1/invoices", list_invoices, methods=["GET"]),
        Route("/v1/invoices/{uuid}", get_invoice, methods=["GET"]),
        Route("/v1/invoices/{uuid}", delete_invoice, methods=["DELETE"]),
    ]


def _control_routes(state: SandboxState, injector: FaultInjector, request_log: RequestLog) -> list[Route]:
    async def get_state(_: Request) -> Response:
        return _json(state.snapshot())

    async def get_requests(_: Request) -> Response:
        entries = [entry.to_api() for entry in request_log.entries()]
        return _json({"requests": entries, "fault_counts": request_log.fault_counts()})

    async def get_faults(_: Request) -> Response:
        return _json(injector.faults.to_mapping())

    async def put_faults(request: Request) -> Response:
        try:
            faults = Faults.from_mapping(await _read_object(request))
        except (TypeError, ValueError) as error:
            raise coded_error(400, str(error), None) from None
        injector.set_faults(faults)
        return _json(faults.to_mapping())

    async def reset(_: Request) -> Response:
        state.reset()
        request_log.clear()
        return _no_content()

    async def merge_now(request: Request) -> Response:
        return _json(state.merge_now(await _read_object(request)))

    return [
        Route("/_sandbox/state", get_state, methods=["GET"]),
        Route("/_sandbox/requests", get_requests, methods=["GET"]),
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/faults", put_faults, methods=["PUT"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/merges", merge_now, methods=["POST"]),
    ]
