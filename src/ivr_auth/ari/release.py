"""Which Asterisk a node runs, and what of newer ARI it therefore has.

The controller reads ``GET /asterisk/info`` each time its events websocket
connects (an Asterisk may come back upgraded), logs the release, warns when
it is past its end of life, and asks :meth:`Release.has` before using a
feature that only newer releases carry. Features land in several branches at
once (a 20.x, a 21.x and a 22.x released the same day); :data:`FEATURES`
gives, per feature, the first release of each branch that has it, and every
branch newer than the newest listed has it from its first release.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VERSION = re.compile(r"(?:^|\s|-|/)(\d{2,})\.(\d+)(?:\.(\d+))?")


class Feature(enum.StrEnum):
    # res_ari needs res_websocket_client.so loaded (a module to load, not a
    # feature to use, but gated the same way).
    WEBSOCKET_CLIENT_MODULE = "websocket_client_module"
    # REST requests and their responses over the events websocket.
    REST_OVER_WEBSOCKET = "rest_over_websocket"
    # Asterisk connects out to the controller's own websocket server.
    OUTBOUND_WEBSOCKET = "outbound_websocket"
    # Several channel variables in one request, and variables on events.
    VARIABLES_ON_EVENTS = "variables_on_events"
    # StasisBroadcast: a call offered to several controllers, taken by the first that claims it.
    STASIS_BROADCAST = "stasis_broadcast"


FEATURES: Mapping[Feature, tuple[tuple[int, int], ...]] = {
    Feature.WEBSOCKET_CLIENT_MODULE: ((20, 13), (21, 8), (22, 3)),
    Feature.REST_OVER_WEBSOCKET: ((20, 14), (21, 9), (22, 4)),
    Feature.OUTBOUND_WEBSOCKET: ((20, 15), (21, 10), (22, 5)),
    Feature.VARIABLES_ON_EVENTS: ((22, 10),),
    Feature.STASIS_BROADCAST: ((20, 17), (22, 7), (23, 1)),
}

# End of security fixes, by branch (asterisk.org's release policy: a long-term
# release has 4 years of full support then 1 of security fixes, a standard one 1
# and 1; the months are the policy's, the days approximate).
END_OF_LIFE: Mapping[int, dt.date] = {
    16: dt.date(2023, 10, 9),
    17: dt.date(2021, 10, 25),
    18: dt.date(2025, 10, 20),
    19: dt.date(2023, 11, 2),
    20: dt.date(2027, 10, 16),
    21: dt.date(2025, 10, 16),
    22: dt.date(2029, 10, 16),
}


@dataclass(frozen=True)
class Release:
    """An Asterisk release; ``text`` as Asterisk gave it."""

    # Two or three numbers as Asterisk gave them; a branch named alone,
    # (22,), stands for its newest release (``--asterisk-version 22``).
    version: tuple[int, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Release | None:
        """``22.10.1+dfsg+~cs6...``, ``Asterisk 16.28.0~dfsg-0+deb11u10``,
        ``certified-20.7-cert5`` -> a Release of (22, 10, 1), (16, 28, 0),
        (20, 7); None for what does not read as one (a build from git, say)."""
        match = VERSION.search(text.strip())
        if not match:
            return None
        return cls(tuple(int(part) for part in match.groups() if part is not None), text.strip())

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Release | None:
        """From ``GET /asterisk/info``'s body."""
        system = info.get("system")
        version = system.get("version") if isinstance(system, Mapping) else None
        return cls.parse(version) if isinstance(version, str) else None

    @property
    def major(self) -> int:
        return self.version[0]

    def __str__(self) -> str:
        return ".".join(map(str, self.version))

    def has(self, feature: Feature) -> bool:
        firsts = FEATURES[feature]
        for major, minor in firsts:
            if self.major == major:
                return len(self.version) == 1 or self.version[1] >= minor
        return self.major > max(major for major, _ in firsts)

    def features(self) -> list[Feature]:
        return [feature for feature in Feature if self.has(feature)]

    def end_of_life(self) -> dt.date | None:
        """When this branch's security fixes end (ended); None when unknown."""
        return END_OF_LIFE.get(self.major)

    def past_end_of_life(self, today: dt.date) -> bool:
        ends = self.end_of_life()
        # Branches older than the oldest listed ended before it.
        if ends is None:
            return self.major < min(END_OF_LIFE)
        return today > ends
