"""What keeps one client from hurting the others: body-size limit, request and idle timeouts, a bearer token.

- ``RequestGuard`` (ASGI middleware): a body larger than ``max_body_bytes`` is refused with 413 before it is
  read (from ``Content-Length``; a chunked body is counted as it arrives and cut off at the limit), and the
  connection is closed so the rest is never read; with a token set, a request without
  ``Authorization: Bearer <token>`` gets 401 (``/health`` stays open for liveness probes).
- ``GuardedH11Protocol`` (uvicorn's HTTP/1.1 protocol with a deadline): a request whose headers and body have
  not all arrived ``request_timeout_s`` after its first byte (or after the connection opened) is dropped, so a
  client that stalls mid-request cannot hold a connection and its buffers forever. Idle connections between
  requests are closed by uvicorn's keep-alive timeout (``keepalive_timeout_s``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from market_env.server.models import default_versions

Scope = dict[str, Any]
OPEN_PATHS = ("/health",)  # answered without a token: a liveness probe holds no secret


def error_body(detail: str, code: str) -> bytes:
    """An error body like every other: detail, error and the default versions; ASCII, so always encodable."""
    return json.dumps({"detail": detail, "error": code, **default_versions()}, ensure_ascii=True).encode()


async def send_error(send: Any, status: int, detail: str, code: str, close: bool = False) -> None:
    headers = [(b"content-type", b"application/json")]
    if close:  # the unread rest of the request would otherwise be read and discarded
        headers.append((b"connection", b"close"))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": error_body(detail, code)})


class RequestGuard:
    """ASGI middleware: bearer token and body-size limit, checked before the app sees the request."""

    def __init__(self, app: Any, max_body_bytes: int, token: str | None = None) -> None:
        self.app, self.max_body_bytes, self.token = app, max_body_bytes, token

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.token is not None and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            detail = (
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' (serve-env's --token)"
            )
            return await send_error(send, 401, detail, "unauthorized")
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            return await send_error(
                send, 413, self._too_large(length.decode("latin-1")), "body_too_large", True
            )
        await self._counted(scope, receive, send)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        expected = f"Bearer {self.token}".encode()
        return hmac.compare_digest(headers.get(b"authorization", b""), expected)

    def _too_large(self, length: str) -> str:
        return f"request body of {length} bytes is over this server's limit of {self.max_body_bytes} bytes"

    async def _counted(self, scope: Scope, receive: Any, send: Any) -> None:
        """Run the app with a ``receive`` that stops a body (chunked, no length) growing past the limit.

        Past the limit the 413 goes out at once and the app is told the client left (whatever it answers
        then is dropped): raising instead would reach FastAPI's body parser, which turns it into a 400.
        """
        seen, started, refused = 0, False, False

        async def counted_receive() -> Any:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes and not started:
                refused = True
                await send_error(send, 413, self._too_large(f"over {seen}"), "body_too_large", True)
                return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Any) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, watched_send)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for receiving a whole request (headers and body)."""

    request_timeout_s = 30.0  # set per server by ``protocol_with_timeout``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()  # a connection that never completes a request is dropped too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE or self.transport.is_closing():
            self._disarm()  # the whole request is in: the handler's time is not the client's
        elif self._deadline is None:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            self.logger.info(
                "dropping a connection whose request did not arrive in %g s", self.request_timeout_s
            )
            self.transport.close()


def protocol_with_timeout(request_timeout_s: float) -> type[GuardedH11Protocol]:
    """A ``GuardedH11Protocol`` class with this deadline (uvicorn takes a class, not an instance)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"request_timeout_s": request_timeout_s})
