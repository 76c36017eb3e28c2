"""FastAGI server: inbound caller-ID verification for operators who keep
their own dialplan. The match and the code check are ``ivr_auth.inbound_match``,
the same logic as the Stasis flow; this module only reads the AGI request
and answers with channel variables.

Dialplan usage (``agi.listen``, 127.0.0.1:4573 by default)::

    same => n,AGI(agi://127.0.0.1:4573/inbound,${EXTEN})
    ; IVRAUTH_RESULT      verified | code_required | not_found | anonymous | error
    ; IVRAUTH_ID          the request's id (empty when none matched)
    ; IVRAUTH_LANGUAGE    ja | en: which prompts to play
    ; IVRAUTH_CODE_LENGTH digits to Read() when code_required, else empty
    ; IVRAUTH_MISSED_CALL 1: verified in missed-call mode, reject unanswered
    same => n,Read(IVRAUTH_CODE,agent-pass,${IVRAUTH_CODE_LENGTH},,1,10)
    same => n,AGI(agi://127.0.0.1:4573/check,${IVRAUTH_ID},${IVRAUTH_CODE})
    ; IVRAUTH_RESULT        verified | wrong_code | failed | closed | not_found | error
    ; IVRAUTH_ATTEMPTS_LEFT code attempts the request has left (empty when none found)

The DID is the first argument, else ``agi_dnid``, else ``agi_extension``;
the caller is ``agi_callerid``. IVRAUTH_RESULT is set last, so a dialplan that
sees it also sees the others. When it is unset, ``AGISTATUS`` says why.
``data/include/ivr-auth-extensions.conf`` (context ``ivr-auth-agi``), as
``ivr-auth asterisk-config`` writes it, is a complete example.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from panoramisk import fast_agi, utils

from ivr_auth import config, errors, inbound_match
from ivr_auth import store as store_mod

logger = logging.getLogger(__name__)

# Asterisk's AGI environment is about 1 KiB plus the arguments.
MAX_REQUEST_BYTES = 16 * 1024
# How long stop() lets requests already being answered finish.
STOP_GRACE_SECONDS = 5.0
# Asterisk writes this for a caller ID or DNID it does not have.
UNKNOWN = "unknown"


class ChannelGone(errors.IvrAuthError):
    """The channel hung up or the AGI connection closed."""


class CommandFailed(errors.IvrAuthError):
    """Asterisk refused or did not answer an AGI command."""


def quote(value: str) -> str:
    """An AGI command argument: Asterisk splits on spaces outside double
    quotes and reads a backslash as escaping the next character; a newline
    would end the command."""
    flat = value.replace("\r", " ").replace("\n", " ")
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_headers(block: bytes) -> dict[str, str]:
    """The ``agi_*: value`` lines of a request. Asterisk sends ``agi_arg_2: ``
    for an empty argument, hence partition and strip rather than ``': '``."""
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers


def _known(value: str | None) -> str | None:
    return value if value and value != UNKNOWN else None


def _log_extra(headers: Mapping[str, str]) -> dict[str, Any]:
    return {"channel": headers.get("agi_channel"), "channel_id": headers.get("agi_uniqueid"), "source": "agi"}


class Request(fast_agi.Request):  # type: ignore[misc]
    """panoramisk's request, reading end of file as a hangup (its parser
    raises on an empty line) and bounding every wait for an answer."""

    headers: dict[str, str]

    def __init__(self, app: Application, headers: dict[str, str], reader: Any, writer: Any) -> None:
        super().__init__(app=app, headers=headers, reader=reader, writer=writer, encoding=app.default_encoding)
        self.timeout = app.read_timeout

    async def _read_result(self) -> dict[str, Any]:
        line: bytes = await self.reader.readline()
        if not line.endswith(b"\n"):
            return {"error": "AGIResultHangup", "msg": "AGI connection closed"}
        try:
            result: dict[str, Any] = utils.parse_agi_result(line.decode(self.encoding, "replace").rstrip("\r\n"))
        except ValueError:
            return {"error": "AGIUnknownError", "msg": "unreadable answer"}
        return result

    async def set_variable(self, name: str, value: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                answer: dict[str, Any] = await self.send_command(f"SET VARIABLE {name} {quote(value)}")
        except ConnectionError as exc:
            raise ChannelGone() from exc
        except TimeoutError as exc:
            raise CommandFailed(f"no answer to SET VARIABLE {name} within {self.timeout}s") from exc
        # 511: the channel is dead (Asterisk's "Command Not Permitted on a dead channel").
        if answer.get("error") == "AGIResultHangup" or answer.get("status_code") == 511:
            raise ChannelGone()
        if answer.get("status_code") != 200 or answer.get("result", ("",))[0] != "1":
            raise CommandFailed(f"SET VARIABLE {name}: {answer.get('msg') or answer.get('line') or answer}")


Route = Callable[[Request], Awaitable[None]]


class Application(fast_agi.Application):  # type: ignore[misc]
    """panoramisk's application with a guarded handler: its own reads the
    request with no size limit and no timeout, and spins for ever on a peer
    that closes before the blank line."""

    default_encoding: str
    _route: dict[str, Route]

    def __init__(self, read_timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        # An explicit loop: panoramisk's default calls asyncio.get_event_loop().
        super().__init__(loop=loop)
        self.read_timeout = read_timeout
        # Connections still reading their request: stop() ends them at once.
        self.reading: set[asyncio.Task[Any]] = set()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        task = asyncio.current_task()
        assert task is not None
        self.reading.add(task)
        try:
            headers = await self._read_request(reader, peer)
        finally:
            self.reading.discard(task)
        try:
            if headers is not None:
                await self._dispatch(Request(self, headers, reader, writer))
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, peer: object) -> dict[str, str] | None:
        # readuntil stops at the blank line; the stream's limit (start_server) caps the size.
        try:
            async with asyncio.timeout(self.read_timeout):
                block = await reader.readuntil(b"\n\n")
        except TimeoutError:
            logger.warning("AGI connection from %s sent no request within %ss; closing", peer, self.read_timeout)
        except asyncio.IncompleteReadError:
            logger.warning("AGI connection from %s closed before its request was complete", peer)
        except asyncio.LimitOverrunError:
            logger.warning("AGI connection from %s sent a request over %d bytes; closing", peer, MAX_REQUEST_BYTES)
        except ConnectionError as exc:
            logger.warning("AGI connection from %s failed while reading its request: %s", peer, exc)
        else:
            return parse_headers(block)
        return None

    async def _dispatch(self, request: Request) -> None:
        script = request.headers.get("agi_network_script", "").strip("/")
        log = _log_extra(request.headers)
        route = self._route.get(script)
        try:
            if route is None:
                logger.error("AGI request for unknown route %r", script, extra=log)
                await request.set_variable("IVRAUTH_RESULT", inbound_match.Result.ERROR)
                return
            try:
                await route(request)
            except (ChannelGone, CommandFailed):
                raise
            except Exception:
                logger.exception("AGI %s failed on %s", script, request.headers.get("agi_channel"), extra=log)
                await request.set_variable("IVRAUTH_RESULT", inbound_match.Result.ERROR)
        except ChannelGone:
            logger.info("AGI %s: the caller hung up before the result was set", script, extra=log)
        except CommandFailed as exc:
            logger.warning("AGI %s: %s", script, exc, extra=log)


class AgiServer:
    """Listens on ``agi.listen`` and serves the routes ``inbound`` and ``check``."""

    def __init__(self, cfg: config.Config, store: store_mod.Store, *, port: int | None = None) -> None:
        """``port`` overrides the configured one (0: any free port, for tests)."""
        self.cfg = cfg
        self.store = store
        self._port_override = port
        self._server: asyncio.Server | None = None
        self._app: Application | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise errors.IvrAuthError("the FastAGI server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        listen = self.cfg.agi_host_port()
        if listen is None:
            raise errors.ConfigError("agi.listen: empty, the FastAGI server is off")
        host, port = listen
        if self._port_override is not None:
            port = self._port_override
        self._app = Application(self.cfg.agi.read_timeout_seconds, asyncio.get_running_loop())
        self._app.add_route("inbound", self._inbound)
        self._app.add_route("check", self._check)
        try:
            self._server = await asyncio.start_server(self._on_connect, host, port, limit=MAX_REQUEST_BYTES)
        except OSError as exc:
            raise errors.ConfigError(f"agi.listen: cannot listen on {host}:{port}: {exc}") from exc
        logger.info("FastAGI listening on %s:%s", host, self.port)

    async def stop(self) -> None:
        """Stop listening, let requests being answered finish for a few
        seconds, then cut every connection."""
        if self._server is None:
            return
        self._server.close()
        if self._app is not None:
            for task in self._app.reading & self._clients:
                task.cancel()
        if self._clients:
            _, pending = await asyncio.wait(self._clients, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("FastAGI stop: cut %d request(s) still running", len(pending))
                await asyncio.wait(pending, timeout=1.0)
        await self._server.wait_closed()
        self._server = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._app is not None
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._app.handler(reader, writer)
        except Exception:
            # The handler catches what a request raises; this is the last guard for the server.
            logger.exception("FastAGI connection handler failed")
        finally:
            self._clients.discard(task)
            writer.close()

    async def _inbound(self, request: Request) -> None:
        headers = request.headers
        did = (
            _known(headers.get("agi_arg_1"))
            or _known(headers.get("agi_dnid"))
            or _known(headers.get("agi_extension"))
            or ""
        )
        match = await inbound_match.match_call(
            self.store,
            self.cfg,
            did=did,
            caller=headers.get("agi_callerid"),
            source="agi",
            channel_id=headers.get("agi_uniqueid") or headers.get("agi_channel"),
        )
        v = match.verification
        code_required = match.result is inbound_match.Result.CODE_REQUIRED and v is not None
        await request.set_variable("IVRAUTH_ID", str(v.id) if v is not None else "")
        await request.set_variable("IVRAUTH_LANGUAGE", match.language)
        await request.set_variable("IVRAUTH_CODE_LENGTH", str(v.code_length) if code_required and v else "")
        await request.set_variable("IVRAUTH_MISSED_CALL", "1" if match.reject_unanswered else "0")
        await request.set_variable("IVRAUTH_RESULT", match.result)

    async def _check(self, request: Request) -> None:
        headers = request.headers
        log = _log_extra(headers)
        try:
            verification_id = uuid.UUID(headers.get("agi_arg_1", ""))
        except ValueError:
            logger.info("AGI check for a malformed request id", extra=log)
            result, v = inbound_match.CheckResult.NOT_FOUND, None
        else:
            log["verification_id"] = str(verification_id)
            result, v = await inbound_match.check_code(
                self.store, verification_id, headers.get("agi_arg_2", ""), source="agi"
            )
            logger.info("AGI code check for request %s: %s", verification_id, result, extra=log)
        left = "" if v is None else str(max(0, v.max_code_attempts - v.code_attempts))
        await request.set_variable("IVRAUTH_ATTEMPTS_LEFT", left)
        await request.set_variable("IVRAUTH_RESULT", result)
