"""``POST /regulations``, ``GET /regulations/{id}`` and ``GET /regulations`` on the worker's
web server (R39), authenticated as the lookups are (a bearer token of ENRICHER_LOOKUP_TOKENS).

``POST`` takes ``{"type": "delete-and-suppress", "userIds": [...], "anonymousIds": [...],
"devices": [...]}`` and answers 202 with the regulation's id once the regulation is on its
topic; the status views show counts of ids, never ids."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from enrichers.regulations import InvalidRegulation, RegulationIds
from streams.observe.web import LookupAccess
from streams.regulations.applier import RegulationService
from streams.regulations.log import RegulationStatus, new_regulations
from streams.settings import Settings


def add_regulation_views(
    app: faust.App, service: RegulationService, settings: Settings, access: LookupAccess
) -> None:
    placeholders = settings.policy.placeholders

    def refused(view: View, request: Request) -> Response | None:
        refusal = access.refusal(request.headers.get("Authorization"))
        if refusal is None:
            return None
        status, body = refusal
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return view.json(body, status=status, headers=headers)

    async def post(view: View, request: Request, **_: Any) -> Response:
        if (answer := refused(view, request)) is not None:
            return answer
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise InvalidRegulation("the body is a JSON object")
            ids = RegulationIds()
            ids.add_body(body, placeholders)
            regulations = new_regulations(str(body.get("type")), ids)
        except (orjson.JSONDecodeError, InvalidRegulation) as exc:
            return view.json(_error("invalid_regulation", str(exc)), status=400)
        await service.submit(regulations)
        for regulation in regulations:
            service.received(regulation)
        ids_made = [regulation.id for regulation in regulations]
        return view.json({"id": ids_made[0], "ids": ids_made}, status=202)

    async def list_all(view: View, request: Request, **_: Any) -> Response:
        if (answer := refused(view, request)) is not None:
            return answer
        return view.json({"regulations": [s.as_json() for s in service.book.values()]})

    async def get(view: View, request: Request, key: str, **_: Any) -> Response:
        if (answer := refused(view, request)) is not None:
            return answer
        status: RegulationStatus | None = service.book.get(key)
        if status is None:
            return view.json(_error("not_found", "no such regulation"), status=404)
        return view.json(status.as_json())

    app.page("/regulations", name="regulations")(
        type("Regulations", (View,), {"post": post, "get": list_all})
    )
    app.page("/regulations/{key}", name="regulation")(type("Regulation", (View,), {"get": get}))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
