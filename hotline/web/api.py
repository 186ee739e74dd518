"""The contact centre's HTTP API (JSON), on the engine's HTTP listener under /api.

Owns the routes agents' desktops, supervisors and back-office tools use: agents (list,
one, login / logout / break / back), call control for an agent's current call (hold,
resume, mute, consult an expert or a URI, conference, transfer, recording pause),
supervision (listen, whisper, barge), queues (live status and wait estimates), the expert directory
("available experts for skill X", explicit presence), callbacks (numbers masked), and
the log level of each subsystem while the engine runs (`GET`/`PUT /api/logging`).

Every request needs ``Authorization: Bearer <token>``, the token read at start-up from
the environment variable named by `http.api_token_env`; without one configured the API
answers 403 to everything, so it is never open by accident. Errors are JSON
``{"error": "..."}`` with the status the contact centre chose (`ApiError`).

Must not know: SIP, media or routing rules — it calls `ContactCentre` methods.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hotline import logsetup
from hotline.acd.agents import Back, Break, Login, Logout

if TYPE_CHECKING:
    from hotline.engine.contact_centre import ContactCentre

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ValueError("request body too large")
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ValueError(f"missing {name!r}")
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValueError(f"{name!r} must be a non-empty string")
    return value


def add_routes(app: web.Application, acd: Callable[[], ContactCentre | None],
               token: str | None) -> None:
    """Mount /api on `app`. `acd` gives the running contact centre (None while starting)."""
    from hotline.engine.contact_centre import ApiError

    expected = f"Bearer {token}".encode() if token else None

    def guarded(handler: Callable[[web.Request, ContactCentre], Awaitable[Any]]) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            if expected is None:
                return _error(403, "the API is disabled: set the environment variable named "
                                   "by http.api_token_env")
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(401, "missing or wrong bearer token")
            centre = acd()
            if centre is None:
                return _error(503, "starting")
            try:
                result = await handler(request, centre)
            except ApiError as exc:
                return _error(exc.status, exc.message)
            except (ValueError, json.JSONDecodeError) as exc:
                return _error(400, str(exc))
            return _json(result)

        return run

    async def agents(request: web.Request, c: ContactCentre) -> Any:
        return c.agents_view()

    async def agent(request: web.Request, c: ContactCentre) -> Any:
        agent_id = request.match_info["agent"]
        if agent_id not in c.router.agents:
            raise ApiError(404, f"no agent {agent_id!r}")
        return c.agent_view(agent_id)

    async def history(request: web.Request, c: ContactCentre) -> Any:
        agent_id = request.match_info["agent"]
        if agent_id not in c.router.agents:
            raise ApiError(404, f"no agent {agent_id!r}")
        return c.agent_history(agent_id)

    async def status(request: web.Request, c: ContactCentre) -> Any:
        agent_id = request.match_info["agent"]
        action = request.match_info["action"]
        body = await _body(request)
        if action == "login":
            return c.command(agent_id, Login())
        if action == "logout":
            return c.command(agent_id, Logout())
        if action == "back":
            return c.command(agent_id, Back())
        if action == "break":
            return c.command(agent_id, Break(_text(body, "reason")))
        raise ApiError(404, f"no action {action!r}")

    async def call(request: web.Request, c: ContactCentre) -> Any:
        agent_id = request.match_info["agent"]
        action = request.match_info["action"]
        body = await _body(request)
        if agent_id not in c.router.agents:
            raise ApiError(404, f"no agent {agent_id!r}")
        if action == "hold":
            return c.hold(agent_id, True)
        if action == "resume":
            return c.hold(agent_id, False)
        if action == "consult":
            return c.consult(agent_id, expert=_text(body, "expert"), uri=_text(body, "uri"))
        if action == "conference":
            return c.conference(agent_id)
        if action == "transfer":
            method = body.get("method", "engine")
            if method not in ("engine", "refer"):
                raise ValueError("'method' must be 'engine' (the engine calls the target) "
                                 "or 'refer' (the caller's phone is asked to)")
            return c.transfer(agent_id, _text(body, "to"), refer=method == "refer")
        if action == "recording":
            paused = body.get("paused")
            if not isinstance(paused, bool):
                raise ValueError("'paused' must be true or false")
            return c.pause_recording(agent_id, paused)
        if action == "mute":
            muted = body.get("muted")
            if not isinstance(muted, bool):
                raise ValueError("'muted' must be true or false")
            return c.mute(agent_id, muted)
        if action == "monitor":
            return c.monitor(agent_id, _text(body, "supervisor", required=True) or "",
                             _text(body, "mode", required=True) or "")
        raise ApiError(404, f"no call action {action!r}")

    async def queues(request: web.Request, c: ContactCentre) -> Any:
        return c.queues_view()

    async def experts(request: web.Request, c: ContactCentre) -> Any:
        skill = request.query.get("skill") or None
        available = request.query.get("available", "").lower() in ("1", "true", "yes")
        minimum = request.query.get("min", "1")
        if not minimum.isdigit() or not 1 <= int(minimum) <= 10:
            raise ValueError("'min' must be a proficiency from 1 to 10")
        return c.experts_view(skill, available, int(minimum))

    async def expert_status(request: web.Request, c: ContactCentre) -> Any:
        body = await _body(request)
        status_value = body.get("status")
        if status_value is not None and not isinstance(status_value, str):
            raise ValueError("'status' must be a string or null")
        return c.set_expert_status(request.match_info["expert"], status_value,
                                   _text(body, "note"))

    async def callbacks(request: web.Request, c: ContactCentre) -> Any:
        return c.callbacks_view()

    app.router.add_get("/api/agents", guarded(agents))
    app.router.add_get("/api/agents/{agent}", guarded(agent))
    app.router.add_get("/api/agents/{agent}/history", guarded(history))
    app.router.add_post("/api/agents/{agent}/{action:login|logout|break|back}", guarded(status))
    app.router.add_post("/api/agents/{agent}/call/{action}", guarded(call))
    app.router.add_get("/api/queues", guarded(queues))
    app.router.add_get("/api/experts", guarded(experts))
    app.router.add_post("/api/experts/{expert}/status", guarded(expert_status))
    app.router.add_get("/api/callbacks", guarded(callbacks))

    async def get_logging(request: web.Request, c: ContactCentre) -> Any:
        return logsetup.levels()

    async def put_logging(request: web.Request, c: ContactCentre) -> Any:
        body = await _body(request)
        name = _text(body, "logger", required=True) or ""
        level = _text(body, "level", required=True) or ""
        full = logsetup.set_level(name, level)
        logging.getLogger("hotline.web").warning("log level of %s set to %s by the API",
                                                 full, level.lower())
        return logsetup.levels()

    app.router.add_get("/api/logging", guarded(get_logging))
    app.router.add_put("/api/logging", guarded(put_logging))
