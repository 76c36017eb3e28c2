"""Where the services a process talks to are: the database, the Asterisk
REST interface, and the server secret that goes with the database. In
production every one comes from the config (or its environment variables);
the development kit's embedded stack fills them in for its own Postgres and
Asterisk (``ivr-auth-dev``), so nothing here knows it exists."""

from __future__ import annotations

from dataclasses import dataclass

from ivr_auth import config, errors


@dataclass(frozen=True, repr=False)
class Connections:
    database_url: str
    ari_url: str
    ari_username: str
    ari_password: str
    server_secret: str

    def __repr__(self) -> str:
        return f"Connections(ari_url={self.ari_url!r})"


def from_config(cfg: config.Config, *, asterisk: bool = True) -> Connections:
    """The connections the config names; a ``ConfigError`` naming each key
    (and its environment variable) that is missing. ``asterisk`` False: a
    process that never reaches Asterisk (``ivr-auth sms``) needs no ARI
    settings, and gets empty ones when there are none."""
    required = [
        ("database_url", "IVR_AUTH_DATABASE_URL", cfg.database_url),
        ("ari.url", "IVR_AUTH_ARI_URL", cfg.ari.url),
        ("ari.password", "IVR_AUTH_ARI_PASSWORD", cfg.ari.password),
        ("server_secret", "IVR_AUTH_SERVER_SECRET", cfg.server_secret),
    ]
    missing = [
        (key, variable) for key, variable, value in required if not value and (asterisk or not key.startswith("ari."))
    ]
    if missing:
        named = ", ".join(f"{key} (${variable})" for key, variable in missing)
        raise errors.ConfigError(
            f"{named}: required to reach Postgres and Asterisk; set them in the config file or the environment "
            "(in a checkout, `ivr-auth-dev` runs this command against its embedded stack instead)"
        )
    return Connections(
        database_url=str(cfg.database_url),
        ari_url=str(cfg.ari.url or "").rstrip("/"),
        ari_username=cfg.ari.username,
        ari_password=str(cfg.ari.password or ""),
        server_secret=str(cfg.server_secret),
    )
