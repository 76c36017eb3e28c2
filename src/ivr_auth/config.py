"""Configuration: frozen dataclasses with defaults, loaded once from YAML.

Every key can be overridden from the environment: ``IVR_AUTH_`` followed by
the key's path in upper case, sections joined by ``_`` (``ari.password`` is
``IVR_AUTH_ARI_PASSWORD``, ``stack.postgres_port`` is
``IVR_AUTH_STACK_POSTGRES_PORT``). ``IVR_AUTH_CONFIG`` names the YAML file.
Lists of sections (``trunks``) cannot be set from the environment: a list
entry has no name to put in a variable. Errors name the bad key
(``trunks[1].port``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import phonenumbers
import yaml

from ivr_auth import errors, phone

ENV_PREFIX = "IVR_AUTH_"
CONFIG_ENV = "IVR_AUTH_CONFIG"
DEFAULT_FILE = "ivr-auth.yaml"
LANGUAGES = ("ja", "en")
NUMBER_FORMATS = ("e164", "e164_no_plus", "national")
TRANSPORTS = ("udp", "tcp")
LOG_FORMATS = ("auto", "json", "text")
# Sections of the rendered pjsip.conf that a trunk may not be named after.
RESERVED_SECTIONS = frozenset({"global", "transport-udp", "transport-tcp"})


@dataclasses.dataclass(frozen=True)
class AriConfig:
    """Asterisk's REST interface. ``url`` unset means the embedded stack's."""

    url: str | None = None
    username: str = "ivr-auth"
    password: str | None = None
    app: str = "ivr-auth"
    # Names this Asterisk in call records, leases and /readyz; empty: the
    # host:port of its ARI URL. Several controllers on several Asterisks
    # share one database, and this says which node placed a call.
    node: str = ""


@dataclasses.dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:8080"


@dataclasses.dataclass(frozen=True)
class TrunkConfig:
    """A SIP trunk that outbound calls leave through (and inbound calls may
    arrive from)."""

    name: str = "trunk"
    host: str = "127.0.0.1"
    port: int = 5080
    transport: str = "udp"
    username: str | None = None
    password: str | None = None
    # Caller ID presented on outbound calls (E.164 or national); empty: none.
    caller_id: str = ""
    # How the dialled number is written in the Request-URI sent to the carrier.
    number_format: str = "e164"
    # Prepended to the formatted number (carrier access codes, routing prefixes).
    dial_prefix: str = ""
    # Trust P-Asserted-Identity from this trunk for inbound caller ID.
    trusted: bool = False
    # Pacing: calls in progress at once, and new calls per second, on this trunk.
    max_channels: int = 30
    calls_per_second: float = 5.0
    # Among several trunks (``trunks``), lower is tried first; equal ones take turns.
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class VerificationConfig:
    """Defaults and bounds for verification requests and their calls."""

    ttl_seconds: int = 300
    max_ttl_seconds: int = 3600
    code_length: int = 6
    max_code_attempts: int = 3
    # Calls per request, counting retries after busy / no answer.
    max_call_attempts: int = 3
    retry_delay_seconds: float = 30.0
    # Ringing before we give up (our own timer; Asterisk's originate timeout
    # reports cause 0, so it is not the one we trust).
    ring_timeout_seconds: int = 30
    first_digit_timeout_seconds: float = 10.0
    inter_digit_timeout_seconds: float = 5.0
    # Times the prompt is repeated when the callee keys nothing at all.
    no_input_retries: int = 2
    # Voice read-out: times the callee may ask to hear the code again (after
    # the two readings of the first round), and how long we wait for a key.
    voice_repeats: int = 2
    voice_key_timeout_seconds: float = 6.0
    # Run Asterisk's answering-machine detection (AMD()) on answered voice
    # calls; a machine never hears the code. Off by default: AMD costs up to
    # its analysis time (amd.conf total_analysis_time) on every call.
    amd: bool = False
    # How long the AMD leg may take before we treat the result as unknown.
    amd_timeout_seconds: float = 8.0


@dataclasses.dataclass(frozen=True)
class InboundConfig:
    """Inbound caller-ID verification: the published numbers people call."""

    # Numbers (DIDs) callers dial for method "inbound", as E.164 or national;
    # a tenant may have numbers of its own (``ivr-auth tenant set``).
    numbers: tuple[str, ...] = ()
    # Stasis app the stack's inbound context hands calls to. One controller
    # at a time serves it (the newest websocket takes it over).
    app: str = "ivr-auth-inbound"
    # DIDs the stack's dialplan sends to the FastAGI example context instead
    # of Stasis (a stand-in for an operator's own dialplan).
    agi_numbers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class AgiConfig:
    """The FastAGI server for operators' own dialplans: AGI(agi://HOST:PORT/inbound)."""

    # HOST:PORT to listen on; "" turns the server off.
    listen: str = "127.0.0.1:4573"
    # A connection that sends no complete AGI request within this is closed.
    read_timeout_seconds: float = 10.0


@dataclasses.dataclass(frozen=True)
class WebhooksConfig:
    """Delivery of signed webhooks from the outbox (by every controller process)."""

    # One POST may take this long before it counts as failed.
    timeout_seconds: float = 10.0
    # Retries back off exponentially with jitter, from base up to max ...
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 900.0
    # ... until an event is this old; then it is given up (and logged so).
    max_age_seconds: float = 86400.0
    # How often the outbox is looked at, and how many POSTs run at once.
    poll_interval_seconds: float = 0.5
    concurrency: int = 10
    # Let callback URLs reach loopback, private, link-local and other
    # non-public addresses. Off: a tenant's callback_url must not become a way
    # into the operator's own network.
    allow_private_networks: bool = False


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """Abuse protection (toll fraud, floods, code guessing) and retention.
    These are the defaults; a tenant may have its own (``tenant set``)."""

    # New requests per tenant per minute.
    requests_per_minute: int = 60
    # Calls (dtmf, voice) per destination number per window, per tenant.
    sends_per_phone: int = 5
    sends_per_phone_window_seconds: int = 600
    # Calls a tenant may place per UTC day; 0: no budget.
    daily_call_budget: int = 0
    # After a request to a number failed (wrong codes used up), refuse new
    # ones to it for this long; 0: off. Off by default: it also lets anyone
    # who can fail on purpose lock the real owner out for that long.
    failure_cooldown_seconds: int = 0
    # Destinations never called, whatever a tenant allows (E.164 prefixes),
    # even when its line types are: premium-rate and special-service ranges.
    # Japan: 0990 (Dial Q2), 0570 (Navi Dial), 0180 (information lines).
    denied_prefixes: tuple[str, ...] = ("+81990", "+81570", "+81180")
    # Line types called (names in phone.LINE_TYPES), checked before the
    # denied prefixes. Numbers a person holds by default. Not premium_rate,
    # shared_cost, uan (toll fraud: the called side earns from our call),
    # pager, voicemail (nobody to key a code), personal, unknown; and not
    # toll_free: it routes to a business line, not a phone a person holds,
    # the called party pays for our call, and pumping traffic to toll-free
    # numbers is a known fraud. Operators and tenants may opt in.
    allowed_line_types: tuple[str, ...] = ("mobile", "fixed", "fixed_or_mobile", "ip")
    # Personal data (numbers, references, event logs) of finished requests
    # is purged after this many days.
    retention_days: int = 90
    purge_interval_seconds: float = 3600.0
    # Alarm when at least this many calls to one prefix (the first
    # prefix_digits digits of the number) were placed within the window and
    # fewer than this share of them verified: the mark of call pumping.
    prefix_alarm_min_calls: int = 20
    prefix_alarm_max_verified_ratio: float = 0.2
    prefix_alarm_window_seconds: int = 3600
    prefix_digits: int = 6


@dataclasses.dataclass(frozen=True)
class PromptsConfig:
    """Recordings an operator supplies instead of the shipped prompt set."""

    # A directory laid out like prompts/ (ja/<name>.wav, en/<name>.wav, 8 kHz
    # mono 16-bit); relative to this file. A prompt missing there plays the
    # shipped one, with a warning at start-up. Empty: the shipped set only.
    custom_dir: str = ""
    # The service name the greeting says, per language; `make prompts` bakes
    # it into the audio (re-run it after a change). Empty: the manifest's.
    service_name_ja: str = ""
    service_name_en: str = ""


@dataclasses.dataclass(frozen=True)
class DialerConfig:
    """The controller's queue handling."""

    # Names this controller in leases and events; empty: <host>-<pid>.
    name: str = ""
    poll_interval_seconds: float = 1.0
    lease_seconds: float = 30.0
    reaper_interval_seconds: float = 5.0
    shutdown_grace_seconds: float = 30.0
    # A node whose events websocket stays down this long is taken for lost:
    # its calls in progress are settled (a ringing one goes back to the queue
    # for another node; one in conversation ends as error, node_lost) instead
    # of waiting out their timers against an Asterisk that is not there.
    node_lost_seconds: float = 10.0
    # A trunk whose call failed on the trunk's side (503, 500, timeout) is
    # skipped by this controller for this long, then tried again.
    trunk_retry_seconds: float = 30.0
    # A trunk that answers an INVITE with nothing at all (not even 100
    # Trying) within this is failed over and skipped like one answering 503.
    # It is PJSIP's INVITE timer B (64 x T1), which the embedded stack sets
    # from this; with an Asterisk of your own, set timer_t1 (this / 64, in
    # ms) and timer_b in the [system] section of its pjsip.conf to match.
    trunk_timeout_seconds: float = 8.0


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """The embedded local stack: a Postgres cluster and an Asterisk instance."""

    # Relative paths are taken from the directory of the config file.
    run_dir: str = ".run/stack"
    bind: str = "127.0.0.1"
    postgres_port: int = 55432
    sip_port: int = 5070
    ari_port: int = 58088
    rtp_start: int = 30000
    rtp_end: int = 30999
    asterisk_binary: str = "asterisk"
    # Empty: found from the system asterisk.conf or the usual places.
    asterisk_module_dir: str = ""
    asterisk_data_dir: str = ""
    # Empty: the newest /usr/lib/postgresql/*/bin.
    postgres_bin_dir: str = ""
    start_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    # json: one object per line; text: for people; auto: text on a terminal,
    # json otherwise. ``--log-format`` wins over it.
    format: str = "auto"


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    # host:port where a process without the API (``ivr-auth controller``)
    # serves its own /metrics; "" for none. API processes serve /metrics on
    # http.listen.
    listen: str = ""


@dataclasses.dataclass(frozen=True)
class DashboardConfig:
    # "Today" for the per-tenant counts: an IANA zone name.
    timezone: str = "Asia/Tokyo"
    # An operator's login lasts this long.
    session_hours: float = 12.0
    # Requests listed on the overview, newest first.
    recent: int = 50


@dataclasses.dataclass(frozen=True)
class Config:
    # Unset: the embedded stack's Postgres.
    database_url: str | None = None
    # Keys code hashes and API key hashes. Unset: with the embedded stack, one
    # generated on its first start; otherwise required.
    server_secret: str | None = None
    default_country: str = "JP"
    languages: tuple[str, ...] = LANGUAGES
    default_language: str = "ja"
    ari: AriConfig = dataclasses.field(default_factory=AriConfig)
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    trunk: TrunkConfig = dataclasses.field(default_factory=TrunkConfig)
    # Several outbound trunks; when set (not empty), ``trunk`` is not used.
    trunks: tuple[TrunkConfig, ...] = ()
    verification: VerificationConfig = dataclasses.field(default_factory=VerificationConfig)
    dialer: DialerConfig = dataclasses.field(default_factory=DialerConfig)
    inbound: InboundConfig = dataclasses.field(default_factory=InboundConfig)
    agi: AgiConfig = dataclasses.field(default_factory=AgiConfig)
    webhooks: WebhooksConfig = dataclasses.field(default_factory=WebhooksConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    prompts: PromptsConfig = dataclasses.field(default_factory=PromptsConfig)
    stack: StackConfig = dataclasses.field(default_factory=StackConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    dashboard: DashboardConfig = dataclasses.field(default_factory=DashboardConfig)
    # Directory that relative paths in this config are taken from.
    base_dir: str = "."

    @property
    def run_dir(self) -> Path:
        return (Path(self.base_dir) / self.stack.run_dir).resolve()

    @property
    def outbound_trunks(self) -> tuple[TrunkConfig, ...]:
        """The trunks of this node: ``trunks`` when set, else the one ``trunk``."""
        return self.trunks or (self.trunk,)

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_asterisk(self) -> bool:
        return self.ari.url is None

    def http_host_port(self) -> tuple[str, int]:
        return split_host_port(self.http.listen, "http.listen")

    def agi_host_port(self) -> tuple[str, int] | None:
        return split_host_port(self.agi.listen, "agi.listen") if self.agi.listen else None

    def metrics_host_port(self) -> tuple[str, int] | None:
        return split_host_port(self.metrics.listen, "metrics.listen") if self.metrics.listen else None


def split_host_port(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise errors.ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), _check_port(int(port), key)


def _check_port(port: int, key: str) -> int:
    if not 1 <= port <= 65535:
        raise errors.ConfigError(f"{key}: port {port} is outside 1-65535")
    return port


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply environment overrides, validate."""
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(CONFIG_ENV) or (DEFAULT_FILE if Path(DEFAULT_FILE).is_file() else None)
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise errors.ConfigError(f"{file}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise errors.ConfigError(f"{file}: the top level must be a mapping of keys")
        raw = loaded
        base_dir = file.resolve().parent
    raw = _apply_env(raw, env)
    raw.setdefault("base_dir", str(base_dir))
    cfg: Config = _build(Config, raw, "")
    validate(cfg)
    return cfg


def from_mapping(raw: Mapping[str, Any]) -> Config:
    """Build and validate a config from an in-memory mapping (tests, tools)."""
    cfg: Config = _build(Config, dict(raw), "")
    validate(cfg)
    return cfg


def _fields(cls: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out = dict(raw)
    for name, hint in _fields(Config).items():
        if dataclasses.is_dataclass(hint):
            section = dict(out.get(name) or {}) if isinstance(out.get(name, {}), dict | None) else out[name]
            if not isinstance(section, dict):
                continue  # reported by _build with the key's name
            for sub in _fields(typing.cast(type[Any], hint)):
                var = f"{ENV_PREFIX}{name}_{sub}".upper()
                if var in env:
                    section[sub] = _EnvValue(env[var], var)
            if section:
                out[name] = section
        else:
            var = f"{ENV_PREFIX}{name}".upper()
            if var in env and name != "base_dir":
                out[name] = _EnvValue(env[var], var)
    return out


@dataclasses.dataclass(frozen=True)
class _EnvValue:
    text: str
    var: str


def _build(cls: type[Any], raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    fields = _fields(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise errors.ConfigError(f"{prefix}{unknown[0]}: unknown key (known keys here: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, hint in fields.items():
        if name not in raw:
            continue
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type[Any], hint), raw[name] or {}, f"{key}.")
        else:
            values[name] = _coerce(raw[name], hint, key)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    source = key
    if isinstance(value, _EnvValue):
        source = f"{key} (from {value.var})"
        value = _parse_env(value.text, hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, source)
    if origin is tuple and dataclasses.is_dataclass(args[0]):
        return _build_list(typing.cast(type[Any], args[0]), value, key, source)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple) and any(isinstance(v, int | float) for v in value):
            raise errors.ConfigError(
                f"{source}: expected a list of strings; put the values in quotes (YAML read a number)"
            )
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise errors.ConfigError(f"{source}: expected a list of strings")
        return tuple(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise errors.ConfigError(f"{source}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise errors.ConfigError(f"{source}: expected a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise errors.ConfigError(f"{source}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            # YAML reads 0033 as the octal number 27 and 0312345678 as 312345678:
            # turning it back into text would silently change the digits.
            raise errors.ConfigError(f"{source}: expected a string; put the value in quotes (YAML read it as a number)")
        raise errors.ConfigError(f"{source}: expected a string, got {value!r}")
    raise errors.ConfigError(f"{source}: unsupported type {hint!r}")


def _build_list(cls: type[Any], value: Any, key: str, source: str) -> tuple[Any, ...]:
    if isinstance(value, str):
        raise errors.ConfigError(f"{source}: a list of sections cannot come from the environment; write it in the file")
    if not isinstance(value, list | tuple):
        raise errors.ConfigError(f"{source}: expected a list of mappings, got {type(value).__name__}")
    return tuple(_build(cls, item, f"{key}[{index}].") for index, item in enumerate(value))


def _parse_env(text: str, hint: Any) -> Any:
    """Environment values are strings; read them as YAML scalars of the field's type.
    Lists of strings stay text (comma-separated): as YAML, a lone number such
    as 0501234000 would turn into an (octal) integer."""
    if typing.get_origin(hint) is tuple:
        return text
    if hint is str or (typing.get_origin(hint) in (types.UnionType, typing.Union) and str in typing.get_args(hint)):
        return None if text == "" and type(None) in typing.get_args(hint) else text
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return text


def validate(cfg: Config) -> None:
    if cfg.default_country not in phonenumbers.SUPPORTED_REGIONS:
        raise errors.ConfigError(f"default_country: {cfg.default_country!r} is not an ISO 3166 region code")
    if not cfg.languages:
        raise errors.ConfigError("languages: at least one language is needed")
    for lang in cfg.languages:
        if lang not in LANGUAGES:
            raise errors.ConfigError(f"languages: {lang!r} is not one of {', '.join(LANGUAGES)}")
    if cfg.default_language not in cfg.languages:
        raise errors.ConfigError(f"default_language: {cfg.default_language!r} is not in languages")
    if cfg.database_url is not None and not cfg.database_url.startswith(("postgresql://", "postgres://")):
        raise errors.ConfigError("database_url: expected a postgresql:// URL")
    if cfg.ari.url is not None:
        if not cfg.ari.url.startswith(("http://", "https://")):
            raise errors.ConfigError("ari.url: expected an http(s):// URL such as http://127.0.0.1:8088/ari")
        if not cfg.ari.password:
            raise errors.ConfigError("ari.password: required when ari.url is set")
    if not cfg.ari.app or not all(c.isalnum() or c in "-_." for c in cfg.ari.app):
        raise errors.ConfigError("ari.app: letters, digits, '-', '_' and '.' only")
    if cfg.ari.node and not all(c.isalnum() or c in "-_.:" for c in cfg.ari.node):
        raise errors.ConfigError("ari.node: letters, digits, '-', '_', '.' and ':' only")
    cfg.http_host_port()
    for key, value in (("ari.username", cfg.ari.username), ("ari.password", cfg.ari.password)):
        _check_conf_value(key, value)
    _validate_trunk(cfg.trunk, "trunk", cfg.default_country)
    _validate_trunks(cfg)
    if cfg.logging.format not in LOG_FORMATS:
        raise errors.ConfigError(f"logging.format: {cfg.logging.format!r} is not one of {', '.join(LOG_FORMATS)}")
    if cfg.server_secret is not None and len(cfg.server_secret) < 32:
        raise errors.ConfigError("server_secret: must be at least 32 characters")
    _validate_verification(cfg.verification)
    _validate_dialer(cfg.dialer)
    _validate_inbound(cfg)
    _validate_webhooks(cfg.webhooks)
    _validate_limits(cfg.limits)
    cfg.metrics_host_port()
    _validate_dashboard(cfg.dashboard)
    stack = cfg.stack
    try:
        ipaddress.ip_address(stack.bind)
    except ValueError as exc:
        raise errors.ConfigError(f"stack.bind: {stack.bind!r} is not an IP address") from exc
    for name in ("postgres_port", "sip_port", "ari_port", "rtp_start", "rtp_end"):
        _check_port(getattr(stack, name), f"stack.{name}")
    if stack.rtp_end - stack.rtp_start < 10:
        raise errors.ConfigError("stack.rtp_start/rtp_end: the RTP range needs at least 10 ports")
    ports = {
        "stack.postgres_port": stack.postgres_port,
        "stack.sip_port": stack.sip_port,
        "stack.ari_port": stack.ari_port,
    }
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            raise errors.ConfigError(f"{key}: port {port} is also {seen[port]}")
        if stack.rtp_start <= port <= stack.rtp_end:
            raise errors.ConfigError(f"{key}: port {port} lies inside the RTP range")
        seen[port] = key
    if stack.start_timeout <= 0:
        raise errors.ConfigError("stack.start_timeout: must be positive")


def _check_conf_value(key: str, value: str | None) -> None:
    # These land in Asterisk config files, where ';' starts a comment and a
    # line break starts a new setting.
    if value is not None and (any(c in value for c in ";\n\r") or value != value.strip()):
        raise errors.ConfigError(f"{key}: may not contain ';', line breaks or surrounding spaces")


def _validate_trunk(trunk: TrunkConfig, key: str, default_country: str) -> None:
    if not trunk.name or not all(c.isalnum() or c in "-_" for c in trunk.name):
        raise errors.ConfigError(f"{key}.name: letters, digits, '-' and '_' only")
    if trunk.name in RESERVED_SECTIONS:
        raise errors.ConfigError(f"{key}.name: {trunk.name!r} is the name of a section of pjsip.conf of our own")
    _check_port(trunk.port, f"{key}.port")
    if trunk.transport not in TRANSPORTS:
        raise errors.ConfigError(f"{key}.transport: {trunk.transport!r} is not one of {', '.join(TRANSPORTS)}")
    if trunk.number_format not in NUMBER_FORMATS:
        raise errors.ConfigError(
            f"{key}.number_format: {trunk.number_format!r} is not one of {', '.join(NUMBER_FORMATS)}"
        )
    if trunk.dial_prefix and not all(c.isdigit() or c in "*#+" for c in trunk.dial_prefix):
        raise errors.ConfigError(f"{key}.dial_prefix: digits, '*', '#' and '+' only")
    for name in ("host", "username", "password"):
        _check_conf_value(f"{key}.{name}", getattr(trunk, name))
    if bool(trunk.username) != bool(trunk.password):
        raise errors.ConfigError(f"{key}.username and {key}.password: set both or neither")
    if trunk.caller_id:
        # As strict as a tenant's caller ID: letters would become other digits.
        try:
            phone.caller_id_e164(trunk.caller_id, default_country)
        except phone.InvalidPhone as exc:
            raise errors.ConfigError(f"{key}.caller_id: {exc}".replace(": phone: ", ": ")) from exc
    if trunk.max_channels < 1:
        raise errors.ConfigError(f"{key}.max_channels: must be at least 1")
    if trunk.calls_per_second <= 0:
        raise errors.ConfigError(f"{key}.calls_per_second: must be positive")


def _validate_trunks(cfg: Config) -> None:
    sections: dict[str, str] = {}
    for index, trunk in enumerate(cfg.trunks):
        key = f"trunks[{index}]"
        _validate_trunk(trunk, key, cfg.default_country)
        # Each trunk is a section of pjsip.conf, and one with credentials a
        # second one named <name>-auth: no two may share a name.
        for section in (trunk.name, f"{trunk.name}-auth"):
            if section in sections:
                raise errors.ConfigError(f"{key}.name: {trunk.name!r} clashes with {sections[section]}")
            sections[section] = f"{key}.name {trunk.name!r}"


def _validate_verification(v: VerificationConfig) -> None:
    if not 4 <= v.code_length <= 10:
        raise errors.ConfigError("verification.code_length: must be 4-10")
    if not 30 <= v.ttl_seconds <= v.max_ttl_seconds:
        raise errors.ConfigError("verification.ttl_seconds: must be at least 30 and at most max_ttl_seconds")
    positive = {
        "max_code_attempts": v.max_code_attempts,
        "max_call_attempts": v.max_call_attempts,
        "ring_timeout_seconds": v.ring_timeout_seconds,
        "first_digit_timeout_seconds": v.first_digit_timeout_seconds,
        "inter_digit_timeout_seconds": v.inter_digit_timeout_seconds,
    }
    for name, value in positive.items():
        if value <= 0:
            raise errors.ConfigError(f"verification.{name}: must be positive")
    if v.retry_delay_seconds < 0 or v.no_input_retries < 0:
        raise errors.ConfigError("verification.retry_delay_seconds / no_input_retries: may not be negative")
    if not 0 <= v.voice_repeats <= 10:
        raise errors.ConfigError("verification.voice_repeats: must be 0-10")
    if v.voice_key_timeout_seconds <= 0 or v.amd_timeout_seconds <= 0:
        raise errors.ConfigError("verification.voice_key_timeout_seconds / amd_timeout_seconds: must be positive")


def _validate_limits(lim: LimitsConfig) -> None:
    for name in (
        "requests_per_minute",
        "sends_per_phone",
        "sends_per_phone_window_seconds",
        "retention_days",
        "purge_interval_seconds",
        "prefix_alarm_min_calls",
        "prefix_alarm_window_seconds",
    ):
        if getattr(lim, name) <= 0:
            raise errors.ConfigError(f"limits.{name}: must be positive")
    for name in ("daily_call_budget", "failure_cooldown_seconds"):
        if getattr(lim, name) < 0:
            raise errors.ConfigError(f"limits.{name}: may not be negative (0 turns it off)")
    if not 0 <= lim.prefix_alarm_max_verified_ratio <= 1:
        raise errors.ConfigError("limits.prefix_alarm_max_verified_ratio: must be 0-1")
    if not 3 <= lim.prefix_digits <= 15:
        raise errors.ConfigError("limits.prefix_digits: must be 3-15")
    for prefix in lim.denied_prefixes:
        if not (prefix.startswith("+") and prefix[1:].isdigit()):
            raise errors.ConfigError(f"limits.denied_prefixes: {prefix!r} is not an E.164 prefix such as +81990")
    if not lim.allowed_line_types:
        raise errors.ConfigError(
            f"limits.allowed_line_types: at least one line type is needed ({', '.join(phone.LINE_TYPES)})"
        )
    for name in lim.allowed_line_types:
        if name not in phone.LINE_TYPES:
            raise errors.ConfigError(f"limits.allowed_line_types: {name!r} is not one of {', '.join(phone.LINE_TYPES)}")


def _validate_webhooks(w: WebhooksConfig) -> None:
    for name in ("timeout_seconds", "backoff_base_seconds", "max_age_seconds", "poll_interval_seconds"):
        if getattr(w, name) <= 0:
            raise errors.ConfigError(f"webhooks.{name}: must be positive")
    if w.backoff_max_seconds < w.backoff_base_seconds:
        raise errors.ConfigError("webhooks.backoff_max_seconds: must be at least backoff_base_seconds")
    if not 1 <= w.concurrency <= 1000:
        raise errors.ConfigError("webhooks.concurrency: must be 1-1000")


def _validate_inbound(cfg: Config) -> None:
    inbound = cfg.inbound
    if not inbound.app or not all(c.isalnum() or c in "-_." for c in inbound.app):
        raise errors.ConfigError("inbound.app: letters, digits, '-', '_' and '.' only")
    for key in ("numbers", "agi_numbers"):
        for number in getattr(inbound, key):
            # Typed by the operator: read as strictly as a number to call
            # (letters refused), but any line type may be published.
            try:
                phone.normalize(number, cfg.default_country)
            except phone.InvalidPhone as exc:
                raise errors.ConfigError(f"inbound.{key}: {exc}".replace(": phone: ", ": ")) from exc
    if cfg.agi.listen:
        cfg.agi_host_port()
    elif inbound.agi_numbers:
        raise errors.ConfigError("inbound.agi_numbers: the FastAGI route needs agi.listen, which is empty")
    if cfg.agi.read_timeout_seconds <= 0:
        raise errors.ConfigError("agi.read_timeout_seconds: must be positive")


def _validate_dashboard(d: DashboardConfig) -> None:
    try:
        zoneinfo.ZoneInfo(d.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.ConfigError(f"dashboard.timezone: {d.timezone!r} is not an IANA time zone name") from exc
    if not 0 < d.session_hours <= 24 * 30:
        raise errors.ConfigError("dashboard.session_hours: must be more than 0 and at most 720")
    if not 1 <= d.recent <= 500:
        raise errors.ConfigError("dashboard.recent: must be between 1 and 500")


def _validate_dialer(d: DialerConfig) -> None:
    if d.name and not all(c.isalnum() or c in "-_." for c in d.name):
        raise errors.ConfigError("dialer.name: letters, digits, '-', '_' and '.' only")
    for name in (
        "poll_interval_seconds",
        "lease_seconds",
        "reaper_interval_seconds",
        "trunk_retry_seconds",
        "node_lost_seconds",
    ):
        if getattr(d, name) <= 0:
            raise errors.ConfigError(f"dialer.{name}: must be positive")
    if not 6.4 <= d.trunk_timeout_seconds <= 32:
        # PJSIP takes no T1 under 100 ms, so no timer B under 6.4 s.
        raise errors.ConfigError("dialer.trunk_timeout_seconds: must be 6.4-32 (PJSIP's timer B; its default is 32)")
    if d.lease_seconds < 3 * d.poll_interval_seconds:
        raise errors.ConfigError("dialer.lease_seconds: must be at least three poll intervals")


def with_overrides(cfg: Config, **sections: Any) -> Config:
    """A copy of ``cfg`` with some section keys replaced (tests, the demo)."""
    changes: dict[str, Any] = {}
    hints = _fields(Config)
    for name, values in sections.items():
        current = getattr(cfg, name)
        is_section = dataclasses.is_dataclass(current) and not isinstance(current, type)
        if is_section:
            changes[name] = dataclasses.replace(current, **values)
        elif isinstance(values, list):
            changes[name] = _coerce(values, hints[name], name)  # trunks=[{...}, ...]
        else:
            changes[name] = values
    out = dataclasses.replace(cfg, **changes)
    validate(out)
    return out
