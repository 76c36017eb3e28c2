"""HTTP written and read as bytes, for requests no client library would
send (over-long lines, hundreds of headers, not HTTP at all)."""

from __future__ import annotations

import asyncio
import json

READ_TIMEOUT_SECONDS = 10


class Answer:
    """An HTTP answer read off the socket up to its close."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ", 2)[1])
        self.headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}

    def error(self) -> dict[str, str]:
        """The API's JSON error body, checked for its shape and headers."""
        assert self.headers["content-type"].startswith("application/json"), self.headers
        assert self.headers["cache-control"] == "no-store"
        data = json.loads(self.body)
        assert set(data) == {"error"}
        assert set(data["error"]) == {"code", "message"}
        assert data["error"]["message"]
        return dict(data["error"])


async def exchange(url: str, raw: bytes) -> Answer:
    """Writes ``raw`` to ``http://host:port`` as it is and reads the answer up
    to the close: the server must close the connection (it does after a
    refusal of this kind, or when the request says ``Connection: close``)."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        return Answer(await asyncio.wait_for(reader.read(), READ_TIMEOUT_SECONDS))
    finally:
        writer.close()
