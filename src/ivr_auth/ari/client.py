"""Asterisk REST Interface client on aiohttp: the REST half.

Written here rather than taken from ``ari-py`` (PyPI ``ari`` 0.1.3, 2014),
which is synchronous, built on a Python-2 swagger client, and fails to import
on Python 3. Only the calls ivr-auth makes are wrapped; ``request`` reaches
the rest. Identifiers we choose (channel and playback ids) are passed in, so
events can be routed before the REST call returns.
"""

from __future__ import annotations

import base64
import json as jsonlib
import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp

from ivr_auth import errors

logger = logging.getLogger(__name__)

JsonObject = dict[str, Any]

# ARI REST requests made by this process, by HTTP method: exposed as the
# counter ivr_auth_ari_requests_total by metrics.Metrics. Kept per process
# rather than per client because a process's clients (one per node) are made
# where no Metrics is at hand, and a process-wide total is what is scraped.
REQUESTS: Counter[str] = Counter()


def authorization(username: str, password: str) -> str:
    """An ``Authorization`` header value (aiohttp's ``BasicAuth`` is deprecated)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class AriClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._headers = {"Authorization": authorization(username, password)}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"AriClient({self.base_url!r}, user={self.username!r})"

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | float | bool] | None = None,
        json: Any = None,
    ) -> Any:
        url = f"{self.base_url}/{path.lstrip('/')}"
        query = {k: _param(v) for k, v in (params or {}).items()}
        REQUESTS[method] += 1
        try:
            async with self._session.request(
                method, url, params=query, json=json, headers=self._headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise _error(method, path, resp.status, body)
                if not body or resp.content_type != "application/json":
                    return None
                return await resp.json()
        except aiohttp.ClientError as exc:
            raise errors.AriUnavailable(f"ARI {method} {path}: {exc or type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise errors.AriUnavailable(f"ARI {method} {path}: no answer within {self._timeout.total}s") from exc

    # --- Asterisk and applications -------------------------------------------------

    async def asterisk_info(self) -> JsonObject:
        info: JsonObject = await self.request("GET", "asterisk/info")
        return info

    async def application(self, app: str) -> JsonObject | None:
        try:
            found: JsonObject = await self.request("GET", f"applications/{app}")
        except errors.AriError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def applications(self) -> list[JsonObject]:
        """The apps Asterisk has (name, channel_ids, ...). An app goes when its
        websocket closes, unless channels are still in it."""
        found = await self.request("GET", "applications")
        return [a for a in found or [] if isinstance(a, dict) and "name" in a]

    async def claim(self, channel_id: str, app: str) -> bool:
        """Claim a channel StasisBroadcast offers (``CallBroadcast``) for
        ``app``; it then enters Stasis there. False when another app won
        (409) or the offer is over (404: timed out, hung up)."""
        try:
            await self.request("POST", "events/claim", params={"channelId": channel_id, "application": app})
        except errors.AriError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def subscribe(self, app: str, event_source: str) -> None:
        """Subscribe ``app`` to an event source (``channel:<id>``): a channel
        that came into Stasis from the dialplan is the app's only while it
        is in Stasis, and its ChannelDestroyed comes after its StasisEnd."""
        await self.request("POST", f"applications/{app}/subscription", params={"eventSource": event_source})

    async def channels(self) -> list[JsonObject]:
        found: list[JsonObject] = await self.request("GET", "channels")
        return found

    # --- Channels --------------------------------------------------------------------

    async def originate(
        self,
        *,
        endpoint: str,
        app: str,
        channel_id: str,
        app_args: str = "",
        caller_id: str = "",
        timeout: int = 30,
        variables: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """Dial ``endpoint``; on answer the channel enters Stasis ``app``."""
        params: dict[str, str | int | float | bool] = {
            "endpoint": endpoint,
            "app": app,
            "channelId": channel_id,
            "timeout": timeout,
        }
        if app_args:
            params["appArgs"] = app_args
        if caller_id:
            params["callerId"] = caller_id
        body = {"variables": dict(variables)} if variables else None
        channel: JsonObject = await self.request("POST", "channels", params=params, json=body)
        return channel

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> bool:
        """Hang up; False when the channel was already gone."""
        try:
            await self.request("DELETE", f"channels/{channel_id}", params={"reason": reason})
        except errors.AriError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def play(self, channel_id: str, media: str | list[str], *, playback_id: str, lang: str = "") -> JsonObject:
        params: dict[str, str | int | float | bool] = {
            "media": media if isinstance(media, str) else ",".join(media),
            "playbackId": playback_id,
        }
        if lang:
            params["lang"] = lang
        playback: JsonObject = await self.request("POST", f"channels/{channel_id}/play", params=params)
        return playback

    async def start_silence(self, channel_id: str) -> None:
        """Send silence (RTP) to the channel. A playback on the channel
        suspends it for good: it does not come back when the playback ends."""
        await self.request("POST", f"channels/{channel_id}/silence")

    async def stop_playback(self, playback_id: str) -> bool:
        try:
            await self.request("DELETE", f"playbacks/{playback_id}")
        except errors.AriError as exc:
            if exc.status == 404:
                return False  # already finished
            raise
        return True

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request("POST", f"channels/{channel_id}/variable", params={"variable": name, "value": value})

    async def continue_at(self, channel_id: str, context: str, extension: str, label: str) -> None:
        """Send a channel in Stasis back to the dialplan, at ``label`` of
        ``context``/``extension``."""
        await self.request(
            "POST",
            f"channels/{channel_id}/continue",
            params={"context": context, "extension": extension, "label": label},
        )

    async def get_variable(self, channel_id: str, name: str) -> str | None:
        try:
            found: JsonObject = await self.request("GET", f"channels/{channel_id}/variable", params={"variable": name})
        except errors.AriError as exc:
            if exc.status == 404:
                return None
            raise
        value = found.get("value")
        return value if isinstance(value, str) else None


def _param(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(method: str, path: str, status: int, body: bytes) -> errors.AriError:
    text = body.decode(errors="replace").strip()
    try:
        message = jsonlib.loads(text).get("message", text)
    except (ValueError, AttributeError):
        message = text
    if status == 401:
        return errors.AriError(f"ARI refused the credentials (HTTP 401) for {method} {path}", status=status)
    if status == 503:
        # Asterisk shutting down (or its HTTP server overloaded): nothing was done.
        message = re.sub(r"<[^>]*>", " ", message)
        message = " ".join(message.split())
        return errors.AriUnavailable(f"ARI {method} {path}: HTTP 503 {message}".rstrip(), status=status)
    return errors.AriError(f"ARI {method} {path}: HTTP {status} {message}".rstrip(), status=status)
