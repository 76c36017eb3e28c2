"""Configuration: frozen pydantic models with defaults in code, loaded once
from YAML and validated at start-up.

Every key can be overridden from the environment: ``IVR_AUTH_`` followed by
the key's path in upper case, sections joined by ``_`` (``ari.password`` is
``IVR_AUTH_ARI_PASSWORD``, ``stack.postgres_port`` is
``IVR_AUTH_STACK_POSTGRES_PORT``); lists are comma-separated.
``IVR_AUTH_CONFIG`` names the YAML file. Lists of sections (``trunks``)
cannot be set from the environment: a list entry has no name to put in a
variable. Errors name the bad key (``trunks[1].port``).
"""

from __future__ import annotations

import ipaddress
import os
import types
import typing
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import phonenumbers
import pydantic
import pydantic.fields
import yaml
from pydantic_core import ErrorDetails

from ivr_auth import errors, phone
from ivr_auth.sms import gsm

ENV_PREFIX = "IVR_AUTH_"
CONFIG_ENV = "IVR_AUTH_CONFIG"
DEFAULT_FILE = "ivr-auth.yaml"

Language = Literal["ja", "en"]
NumberFormat = Literal["e164", "e164_no_plus", "national"]
Transport = Literal["udp", "tcp"]
TrunkIdentify = Literal["ip", "ip_port", "header"]
LogFormat = Literal["auto", "json", "text"]
LANGUAGES: tuple[Language, ...] = typing.get_args(Language)
LOG_FORMATS: tuple[LogFormat, ...] = typing.get_args(LogFormat)
# Sections of the rendered pjsip.conf that a trunk may not be named after.
RESERVED_SECTIONS = frozenset({"global", "transport-udp", "transport-tcp"})


# --- value types: the rules of one value, wherever it appears --------------------


def _must(ok: Callable[[Any], object], problem: str) -> pydantic.AfterValidator:
    """A value is good when ``ok(value)`` is true and raises nothing (a zone
    name such as 'Asia' makes ZoneInfo read a directory: OSError); else
    ``problem``, formatted with the value, is the error."""

    def check(value: Any) -> Any:
        try:
            good = ok(value)
        except (ValueError, LookupError, OSError):
            good = False
        if not good:
            raise ValueError(problem.format(value))
        return value

    return pydantic.AfterValidator(check)


def _only(extra: str, *, letters: bool = True, may_be_empty: bool = False) -> pydantic.AfterValidator:
    quoted = [repr(c) for c in extra]
    kinds = ["letters", "digits"] if letters else ["digits"]

    def ok(value: str) -> bool:
        allowed = all((c.isalnum() if letters else c.isdigit()) or c in extra for c in value)
        return allowed and (value != "" or may_be_empty)

    return _must(ok, ", ".join([*kinds, *quoted[:-1]]) + f" and {quoted[-1]} only")


def _split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {int(port)} is outside 1-65535")
    return host.strip("[]"), int(port)


def _host_port(value: str) -> str:
    _split_host_port(value)
    return value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _comma_separated(value: Any) -> Any:
    # How the environment gives a list; a file may write one so too.
    return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value


_T = typing.TypeVar("_T")
# A list is read as a list (YAML gives one, the code keeps a tuple); its items
# are as strict as any value.
ListOf = Annotated[tuple[_T, ...], pydantic.Field(strict=False), pydantic.BeforeValidator(_comma_separated)]
Port = Annotated[int, pydantic.Field(ge=1, le=65535)]
Seconds = pydantic.PositiveFloat
HostPort = Annotated[str, pydantic.AfterValidator(_host_port)]
# "" turns it off.
OptionalHostPort = Annotated[str, pydantic.AfterValidator(lambda v: v and _host_port(v))]
AppName = Annotated[str, _only("-_.")]
# RFC 3261's token characters, which a header name is made of.
_TOKEN_EXTRA = "-.!%*_+`'~"


def _sip_header(value: str) -> str:
    """``Name: value`` for PJSIP's match_header, as Asterisk 16 and 22 both
    read it: a header name, and a value compared exactly (22 would take
    ``/.../`` as a regular expression, 16 literally: refused)."""
    name, sep, wanted = value.partition(":")
    wanted = wanted.strip()
    if not sep or not name or not all(c.isascii() and (c.isalnum() or c in _TOKEN_EXTRA) for c in name):
        raise ValueError(f"expected 'Name: value' with a SIP header name such as X-Trunk, got {value!r}")
    if not wanted or not all(c.isprintable() and c not in ";," for c in wanted):
        raise ValueError("the header's value must be printable, without ';' or ',', and not empty")
    if len(wanted) > 1 and wanted[0] == wanted[-1] == "/":
        raise ValueError("a value in /.../ is a regular expression to Asterisk 22 and a literal to 16: not taken")
    return f"{name}: {wanted}"


SipHeader = Annotated[str, pydantic.AfterValidator(lambda v: v and _sip_header(v))]
TrunkName = Annotated[
    str,
    _only("-_"),
    _must(lambda n: n not in RESERVED_SECTIONS, "{!r} is the name of a section of pjsip.conf of our own"),
]
# These land in Asterisk config files, where ';' starts a comment and a line
# break starts a new setting.
ConfValue = Annotated[
    str,
    _must(
        lambda v: v == v.strip() and set(v).isdisjoint(";\n\r"),
        "may not contain ';', line breaks or surrounding spaces",
    ),
]
AriUrl = Annotated[
    str,
    _must(
        lambda u: u.startswith(("http://", "https://")), "expected an http(s):// URL such as http://127.0.0.1:8088/ari"
    ),
]
PostgresUrl = Annotated[
    str, _must(lambda u: u.startswith(("postgresql://", "postgres://")), "expected a postgresql:// URL")
]
Region = Annotated[str, _must(phonenumbers.SUPPORTED_REGIONS.__contains__, "{!r} is not an ISO 3166 region code")]
E164Prefix = Annotated[
    str, _must(lambda p: p[:1] == "+" and p[1:].isdigit(), "{!r} is not an E.164 prefix such as +81990")
]
LineType = Annotated[str, _must(phone.LINE_TYPES.__contains__, "{!r} is not one of " + ", ".join(phone.LINE_TYPES))]
IpAddress = Annotated[str, _must(ipaddress.ip_address, "{!r} is not an IP address")]
TimeZone = Annotated[str, _must(zoneinfo.ZoneInfo, "{!r} is not an IANA time zone name")]
AsteriskRoot = Annotated[
    str,
    _must(lambda v: v in ("auto", "host") or v.startswith("/"), '{!r} is not "auto", "host" or an absolute path'),
]


class _Invalid(ValueError):
    """A rule across keys, broken at ``keys`` (below the model that checks it)."""

    def __init__(self, keys: str | tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.keys = (keys,) if isinstance(keys, str) else keys


class Section(pydantic.BaseModel):
    """Frozen, strict (YAML's 0033 is no string, "5060" no port), no unknown keys."""

    model_config = pydantic.ConfigDict(frozen=True, strict=True, extra="forbid")

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` (``dataclasses.replace`` for these)."""
        return _validated(type(self), {**dict(self), **changes})


# --- the sections -----------------------------------------------------------------


class AriConfig(Section):
    """Asterisk's REST interface. ``url`` unset means the embedded stack's."""

    url: AriUrl | None = None
    username: ConfValue = "ivr-auth"
    password: ConfValue | None = None
    app: AppName = "ivr-auth"
    # Names this Asterisk in call records, leases and /readyz; empty: the
    # host:port of its ARI URL. Several controllers on several Asterisks
    # share one database, and this says which node placed a call.
    node: Annotated[str, _only("-_.:", may_be_empty=True)] = ""

    @pydantic.model_validator(mode="after")
    def _password_with_url(self) -> Self:
        if self.url is not None and not self.password:
            raise _Invalid("password", "required when ari.url is set")
        return self


class HttpConfig(Section):
    listen: HostPort = "127.0.0.1:8080"
    # Long-poll GETs (``?wait=``) waiting at once in one API process; more are 503.
    max_waiters: Annotated[int, pydantic.Field(ge=1)] = 10000
    # How long an API key, once found, is trusted without asking Postgres
    # (a revocation ends it at once, by NOTIFY); 0: every request asks.
    api_key_cache_seconds: pydantic.NonNegativeFloat = 30.0


class TrunkConfig(Section):
    """A SIP trunk that outbound calls leave through (and inbound calls may
    arrive from)."""

    name: TrunkName = "trunk"
    host: ConfValue = "127.0.0.1"
    port: Port = 5080
    transport: Transport = "udp"
    # The PJSIP transport (its section name in pjsip.conf) the trunk's calls
    # leave by. Empty: "transport-udp" or "transport-tcp" after ``transport``,
    # the names in the embedded stack and in Asterisk's sample pjsip.conf.
    pjsip_transport: Annotated[str, _only("-_.", may_be_empty=True)] = ""
    username: ConfValue | None = None
    password: ConfValue | None = None
    # Caller ID presented on outbound calls (E.164 or national); empty: none.
    # Checked by Config, which knows the default country.
    caller_id: str = ""
    # How the dialled number is written in the Request-URI sent to the carrier.
    number_format: NumberFormat = "e164"
    # Prepended to the formatted number (carrier access codes, routing prefixes).
    dial_prefix: Annotated[str, _only("*#+", letters=False, may_be_empty=True)] = ""
    # Trust P-Asserted-Identity from this trunk for inbound caller ID.
    trusted: bool = False
    # How Asterisk tells this trunk's inbound calls from others' (its identify
    # section): "ip", by the host's address, from any port; "ip_port", by
    # host:port (the carrier sends from the port it listens on; udp only, a
    # TCP connection comes from any port), for trunks sharing a host;
    # "header", by ``identify_header``, from the host's address only (host an
    # IP address: the endpoint's ACL admits no other).
    identify: TrunkIdentify = "ip"
    # For identify "header": "Name: value", a SIP header the carrier puts on
    # this trunk's calls and its exact value (e.g. "X-Trunk: carrier-b").
    identify_header: SipHeader = ""
    # Pacing: calls in progress at once, and new calls per second, on this trunk.
    max_channels: Annotated[int, pydantic.Field(ge=1)] = 30
    calls_per_second: pydantic.PositiveFloat = 5.0
    # Among several trunks (``trunks``), lower is tried first; equal ones take turns.
    priority: int = 0

    @pydantic.model_validator(mode="after")
    def _credentials(self) -> Self:
        if bool(self.username) != bool(self.password):
            raise _Invalid(("username", "password"), "set both or neither")
        return self

    @pydantic.model_validator(mode="after")
    def _identification(self) -> Self:
        if (self.identify == "header") != bool(self.identify_header):
            raise _Invalid("identify_header", 'set it with identify: "header", and only then')
        if self.identify == "ip_port" and self.transport != "udp":
            raise _Invalid("identify", "ip_port needs transport udp: a TCP connection comes from any port")
        if self.identify == "header" and not _is_ip(self.host):
            raise _Invalid("host", "identify header needs an IP address here: only it may send the header")
        return self


class VerificationConfig(Section):
    """Defaults and bounds for verification requests and their calls."""

    ttl_seconds: Annotated[int, pydantic.Field(ge=30)] = 300
    max_ttl_seconds: int = 3600
    code_length: Annotated[int, pydantic.Field(ge=4, le=10)] = 6
    max_code_attempts: pydantic.PositiveInt = 3
    # Calls per request, counting retries after busy / no answer.
    max_call_attempts: pydantic.PositiveInt = 3
    retry_delay_seconds: pydantic.NonNegativeFloat = 30.0
    # Ringing before we give up (our own timer; Asterisk's originate timeout
    # reports cause 0, so it is not the one we trust).
    ring_timeout_seconds: pydantic.PositiveInt = 30
    first_digit_timeout_seconds: Seconds = 10.0
    inter_digit_timeout_seconds: Seconds = 5.0
    # Times the prompt is repeated when the callee keys nothing at all.
    no_input_retries: pydantic.NonNegativeInt = 2
    # Voice read-out: times the callee may ask to hear the code again (after
    # the two readings of the first round), and how long we wait for a key.
    voice_repeats: Annotated[int, pydantic.Field(ge=0, le=10)] = 2
    voice_key_timeout_seconds: Seconds = 6.0
    # Run Asterisk's answering-machine detection (AMD()) on answered voice
    # calls; a machine never hears the code. Off by default: AMD costs up to
    # its analysis time (amd.conf total_analysis_time) on every call.
    amd: bool = False
    # How long the AMD leg may take before we treat the result as unknown.
    amd_timeout_seconds: Seconds = 8.0

    @pydantic.model_validator(mode="after")
    def _ttl_within_max(self) -> Self:
        if self.ttl_seconds > self.max_ttl_seconds:
            raise _Invalid("ttl_seconds", "must be at least 30 and at most max_ttl_seconds")
        return self


class InboundConfig(Section):
    """Inbound caller-ID verification: the published numbers people call.
    Config checks the numbers, since it knows the default country."""

    # Numbers (DIDs) callers dial for method "inbound", as E.164 or national;
    # a tenant may have numbers of its own (``ivr-auth tenant set``).
    numbers: ListOf[str] = ()
    # The inbound context hands calls to the Stasis apps <app>-1 ... <app>-<slots>:
    # each controller holds one slot on its node (the lowest free one, or
    # ``slot``), so every controller alive takes inbound calls. More
    # controllers on one node than slots: the extra ones dial but take none.
    app: AppName = "ivr-auth-inbound"
    slots: Annotated[int, pydantic.Field(ge=1, le=99)] = 8
    slot: Annotated[int, pydantic.Field(ge=1, le=99)] | None = None
    # How long StasisBroadcast offers a call to the slots before the dialplan
    # tries them one by one (Asterisk 20.17, 22.7, 23.1 and later).
    broadcast_timeout_ms: Annotated[int, pydantic.Field(ge=0, le=60000)] = 1000
    # DIDs the stack's dialplan sends to the FastAGI example context instead
    # of Stasis (a stand-in for an operator's own dialplan).
    agi_numbers: ListOf[str] = ()

    @pydantic.model_validator(mode="after")
    def _slot_in_range(self) -> Self:
        if self.slot is not None and self.slot > self.slots:
            raise _Invalid("slot", "must be at most inbound.slots")
        return self


class AgiConfig(Section):
    """The FastAGI server for operators' own dialplans: AGI(agi://HOST:PORT/inbound)."""

    listen: OptionalHostPort = "127.0.0.1:4573"
    # A connection that sends no complete AGI request within this is closed.
    read_timeout_seconds: Seconds = 10.0


class WebhooksConfig(Section):
    """Delivery of signed webhooks from the outbox (by every controller process)."""

    # One POST may take this long before it counts as failed.
    timeout_seconds: Seconds = 10.0
    # Retries back off exponentially with jitter, from base up to max ...
    backoff_base_seconds: Seconds = 2.0
    backoff_max_seconds: float = 900.0
    # ... until an event is this old; then it is given up (and logged so).
    max_age_seconds: Seconds = 86400.0
    # A webhook written wakes the senders at once (NOTIFY); the outbox is
    # also looked at this often, for retries come due and a NOTIFY missed.
    # And how many POSTs run at once.
    poll_interval_seconds: Seconds = 1.0
    concurrency: Annotated[int, pydantic.Field(ge=1, le=1000)] = 10
    # Let callback URLs reach loopback, private, link-local and other
    # non-public addresses. Off: a tenant's callback_url must not become a way
    # into the operator's own network.
    allow_private_networks: bool = False

    @pydantic.model_validator(mode="after")
    def _backoff_range(self) -> Self:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise _Invalid("backoff_max_seconds", "must be at least backoff_base_seconds")
        return self


class LimitsConfig(Section):
    """Abuse protection (toll fraud, floods, code guessing) and retention.
    These are the defaults; a tenant may have its own (``tenant set``)."""

    # New requests per tenant per minute.
    requests_per_minute: pydantic.PositiveInt = 60
    # Calls (dtmf, voice) per destination number per window, per tenant.
    sends_per_phone: pydantic.PositiveInt = 5
    sends_per_phone_window_seconds: pydantic.PositiveInt = 600
    # Calls a tenant may place per UTC day; 0: no budget.
    daily_call_budget: pydantic.NonNegativeInt = 0
    # SMS a tenant may send per UTC day; 0: no budget. (SMS pumping: the
    # receiving range of an expensive destination earns from each message.)
    daily_sms_budget: pydantic.NonNegativeInt = 0
    # After a request to a number failed (wrong codes used up), refuse new
    # ones to it for this long; 0: off. Off by default: it also lets anyone
    # who can fail on purpose lock the real owner out for that long.
    failure_cooldown_seconds: pydantic.NonNegativeInt = 0
    # Destinations never called, whatever a tenant allows (E.164 prefixes),
    # even when its line types are: premium-rate and special-service ranges.
    # Japan: 0990 (Dial Q2), 0570 (Navi Dial), 0180 (information lines).
    denied_prefixes: ListOf[E164Prefix] = ("+81990", "+81570", "+81180")
    # Line types called (names in phone.LINE_TYPES), checked before the
    # denied prefixes. Numbers a person holds by default. Not premium_rate,
    # shared_cost, uan (toll fraud: the called side earns from our call),
    # pager, voicemail (nobody to key a code), personal, unknown; and not
    # toll_free: it routes to a business line, not a phone a person holds,
    # the called party pays for our call, and pumping traffic to toll-free
    # numbers is a known fraud. Operators and tenants may opt in.
    allowed_line_types: Annotated[
        ListOf[LineType], _must(len, f"at least one line type is needed ({', '.join(phone.LINE_TYPES)})")
    ] = ("mobile", "fixed", "fixed_or_mobile", "ip")
    # Personal data (numbers, references, event logs) of finished requests
    # is purged after this many days.
    retention_days: pydantic.PositiveInt = 90
    purge_interval_seconds: Seconds = 3600.0
    # Alarm when at least this many calls to one prefix (the first
    # prefix_digits digits of the number) were placed within the window and
    # fewer than this share of them verified: the mark of call pumping.
    prefix_alarm_min_calls: pydantic.PositiveInt = 20
    prefix_alarm_max_verified_ratio: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.2
    prefix_alarm_window_seconds: pydantic.PositiveInt = 3600
    prefix_digits: Annotated[int, pydantic.Field(ge=3, le=15)] = 6


class PromptsConfig(Section):
    """Recordings an operator supplies instead of the shipped prompt set."""

    # A directory laid out like prompts/ (ja/<name>.wav, en/<name>.wav, 8 kHz
    # mono 16-bit); relative to this file. A prompt missing there plays the
    # shipped one, with a warning at start-up. Empty: the shipped set only.
    custom_dir: str = ""
    # The service name the greeting says, per language; `make prompts` bakes
    # it into the audio (re-run it after a change). Empty: the manifest's.
    service_name_ja: str = ""
    service_name_en: str = ""


class DialerConfig(Section):
    """The controller's queue handling."""

    # Names this controller in leases and events; empty: <host>-<pid>.
    name: Annotated[str, _only("-_.", may_be_empty=True)] = ""
    poll_interval_seconds: Seconds = 1.0
    lease_seconds: Seconds = 30.0
    reaper_interval_seconds: Seconds = 5.0
    shutdown_grace_seconds: float = 30.0
    # A node whose events websocket stays down this long is taken for lost:
    # its calls in progress are settled (a ringing one goes back to the queue
    # for another node; one in conversation ends as error, node_lost) instead
    # of waiting out their timers against an Asterisk that is not there.
    node_lost_seconds: Seconds = 10.0
    # A trunk whose call failed on the trunk's side (503, 500, timeout) is
    # skipped by this controller for this long, then tried again.
    trunk_retry_seconds: Seconds = 30.0
    # A trunk that answers an INVITE with nothing at all (not even 100
    # Trying) within this is failed over and skipped like one answering 503.
    # It is PJSIP's INVITE timer B (64 x T1), which the embedded stack sets
    # from this; with an Asterisk of your own, set timer_t1 (this / 64, in
    # ms) and timer_b in the [system] section of its pjsip.conf to match.
    # PJSIP takes no T1 under 100 ms, so no timer B under 6.4 s; its default is 32.
    trunk_timeout_seconds: Annotated[float, pydantic.Field(ge=6.4, le=32)] = 8.0

    @pydantic.model_validator(mode="after")
    def _lease_outlives_polls(self) -> Self:
        if self.lease_seconds < 3 * self.poll_interval_seconds:
            raise _Invalid("lease_seconds", "must be at least three poll intervals")
        return self


CarrierName = Annotated[
    str,
    _must(
        lambda n: n != "" and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in n),
        "{!r}: a-z, 0-9, '_' and '-' only",
    ),
]
SourceAddr = Annotated[
    str,
    _must(
        gsm.sender_kind,
        "{!r} is no sender ID: 1-11 letters, digits or other GSM characters, or up to 15 digits (optionally after '+')",
    ),
]


class SmsCarrierConfig(Section):
    """An SMS carrier (SMSC) bound over SMPP 3.4 as a transceiver."""

    name: CarrierName = "carrier"
    host: str = "127.0.0.1"
    port: Port = 2775
    system_id: Annotated[str, pydantic.Field(min_length=1, max_length=15)] = "ivr-auth"
    password: Annotated[str, pydantic.Field(max_length=8)] = ""
    system_type: Annotated[str, pydantic.Field(max_length=12)] = ""
    # Sender ID: alphanumeric (TON 5/NPI 0) or E.164 digits (TON 1/NPI 1).
    source_addr: SourceAddr = "IVRAUTH"
    # submit_sm awaiting their response at once, and submit_sm per second.
    window: Annotated[int, pydantic.Field(ge=1, le=1000)] = 10
    messages_per_second: pydantic.PositiveFloat = 10.0
    enquire_link_seconds: Seconds = 30.0
    # A request (bind, submit_sm, enquire_link) unanswered this long: a
    # submit is retried later, and a bind whose enquire_link goes unanswered
    # is taken for dead and reconnected.
    response_timeout_seconds: Seconds = 10.0
    # Reconnects back off exponentially with jitter between these.
    reconnect_min_seconds: Seconds = 1.0
    reconnect_max_seconds: Seconds = 60.0
    # Lowest first; the next is used while a carrier is unbound.
    priority: int = 0

    @pydantic.model_validator(mode="after")
    def _reconnect_range(self) -> Self:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise _Invalid("reconnect_max_seconds", "must be at least reconnect_min_seconds")
        return self


class SmsConfig(Section):
    """SMS codes: the message and the carriers it goes through."""

    # The service name written in the message; empty: prompts.service_name_ja
    # / _en, else the tenant's name.
    service_name_ja: str = ""
    service_name_en: str = ""
    # Due messages are looked for this often, and claimed under a lease this long.
    poll_interval_seconds: Seconds = 1.0
    lease_seconds: Seconds = 30.0
    # Empty: no SMS (requests with sms are refused by the API).
    carriers: Annotated[tuple[SmsCarrierConfig, ...], pydantic.Field(strict=False)] = ()

    @pydantic.model_validator(mode="after")
    def _carriers_apart(self) -> Self:
        seen: dict[str, int] = {}
        for i, carrier in enumerate(self.carriers):
            if carrier.name in seen:
                raise _Invalid(f"carriers[{i}].name", f"{carrier.name!r} is also carriers[{seen[carrier.name]}]'s name")
            seen[carrier.name] = i
        if self.lease_seconds < 3 * self.poll_interval_seconds:
            raise _Invalid("lease_seconds", "must be at least three poll intervals")
        return self


class StackConfig(Section):
    """The embedded local stack: a Postgres cluster and an Asterisk instance."""

    # Relative paths are taken from the directory of the config file.
    run_dir: str = ".run/stack"
    bind: IpAddress = "127.0.0.1"
    postgres_port: Port = 55432
    sip_port: Port = 5070
    ari_port: Port = 58088
    rtp_start: Port = 30000
    rtp_end: Port = 30999
    # Which Asterisk the stack runs. "auto": Asterisk 22 from the tree `make
    # setup` builds where the distribution has none newer than 16 (Debian 12),
    # else the host's own; "host": the host's own (Debian 12: Asterisk 16);
    # an absolute path: a tree with Asterisk installed, entered with chroot.
    asterisk_root: AsteriskRoot = "auto"
    # The program, on PATH for the host's Asterisk, or a path in the tree.
    asterisk_binary: str = "asterisk"
    # Empty: found from the installation's asterisk.conf or the usual places.
    asterisk_module_dir: str = ""
    asterisk_data_dir: str = ""
    # Empty: the newest /usr/lib/postgresql/*/bin.
    postgres_bin_dir: str = ""
    start_timeout: Seconds = 60.0

    @pydantic.model_validator(mode="after")
    def _ports_apart(self) -> Self:
        if self.rtp_end - self.rtp_start < 10:
            raise _Invalid("rtp_start/rtp_end", "the RTP range needs at least 10 ports")
        seen: dict[int, str] = {}
        for name in ("postgres_port", "sip_port", "ari_port"):
            port = getattr(self, name)
            if port in seen:
                raise _Invalid(name, f"port {port} is also stack.{seen[port]}")
            if self.rtp_start <= port <= self.rtp_end:
                raise _Invalid(name, f"port {port} lies inside the RTP range")
            seen[port] = name
        return self


class LoggingConfig(Section):
    # json: one object per line; text: for people; auto: text on a terminal,
    # json otherwise. ``--log-format`` wins over it.
    format: LogFormat = "auto"


class MetricsConfig(Section):
    # host:port where a process without the API (``ivr-auth controller``)
    # serves its own /metrics; "" for none. API processes serve /metrics on
    # http.listen.
    listen: OptionalHostPort = ""


class DashboardConfig(Section):
    # "Today" for the per-tenant counts: an IANA zone name.
    timezone: TimeZone = "Asia/Tokyo"
    # An operator's login lasts this long.
    session_hours: Annotated[float, pydantic.Field(gt=0, le=24 * 30)] = 12.0
    # Requests listed on the overview, newest first.
    recent: Annotated[int, pydantic.Field(ge=1, le=500)] = 50


class Config(Section):
    # Unset: the embedded stack's Postgres.
    database_url: PostgresUrl | None = None
    # Keys code hashes and API key hashes. Unset: with the embedded stack, one
    # generated on its first start; otherwise required.
    server_secret: Annotated[str, pydantic.Field(min_length=32)] | None = None
    default_country: Region = "JP"
    languages: Annotated[ListOf[Language], _must(len, "at least one language is needed")] = LANGUAGES
    default_language: Language = "ja"
    ari: AriConfig = AriConfig()
    http: HttpConfig = HttpConfig()
    trunk: TrunkConfig = TrunkConfig()
    # Several outbound trunks; when set (not empty), ``trunk`` is not used.
    trunks: Annotated[tuple[TrunkConfig, ...], pydantic.Field(strict=False)] = ()
    verification: VerificationConfig = VerificationConfig()
    dialer: DialerConfig = DialerConfig()
    inbound: InboundConfig = InboundConfig()
    agi: AgiConfig = AgiConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    limits: LimitsConfig = LimitsConfig()
    prompts: PromptsConfig = PromptsConfig()
    stack: StackConfig = StackConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    sms: SmsConfig = SmsConfig()
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
        return _split_host_port(self.http.listen)

    def agi_host_port(self) -> tuple[str, int] | None:
        return _split_host_port(self.agi.listen) if self.agi.listen else None

    def metrics_host_port(self) -> tuple[str, int] | None:
        return _split_host_port(self.metrics.listen) if self.metrics.listen else None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, raw: Any) -> Any:
        # YAML reads a section with nothing under it ("ari:") as null.
        if not isinstance(raw, dict):
            return raw
        sections = {name for name, field in cls.model_fields.items() if _section_of(cls, name) is field.annotation}
        return {k: {} if v is None and k in sections else v for k, v in raw.items()}

    @pydantic.model_validator(mode="after")
    def _across_sections(self) -> Self:
        if self.default_language not in self.languages:
            raise _Invalid("default_language", f"{self.default_language!r} is not in languages")
        keyed = [("trunk", self.trunk), *((f"trunks[{i}]", t) for i, t in enumerate(self.trunks))]
        for key, trunk in keyed:
            if trunk.caller_id:
                # As strict as a tenant's caller ID: letters would become other digits.
                try:
                    phone.caller_id_e164(trunk.caller_id, self.default_country)
                except phone.InvalidPhone as exc:
                    raise _Invalid(f"{key}.caller_id", _phone_problem(exc)) from None
        # Each trunk is a section of pjsip.conf, and one with credentials a
        # second one named <name>-auth: no two may share a name.
        sections: dict[str, str] = {}
        for key, trunk in keyed[1:]:
            for section in (trunk.name, f"{trunk.name}-auth"):
                if section in sections:
                    raise _Invalid(f"{key}.name", f"{trunk.name!r} clashes with {sections[section]}")
                sections[section] = f"{key}.name {trunk.name!r}"
        for name in ("numbers", "agi_numbers"):
            for number in getattr(self.inbound, name):
                # Typed by the operator: read as strictly as a number to call
                # (letters refused), but any line type may be published.
                try:
                    phone.normalize(number, self.default_country)
                except phone.InvalidPhone as exc:
                    raise _Invalid(f"inbound.{name}", _phone_problem(exc)) from None
        if self.inbound.agi_numbers and not self.agi.listen:
            raise _Invalid("inbound.agi_numbers", "the FastAGI route needs agi.listen, which is empty")
        return self


def _phone_problem(exc: phone.InvalidPhone) -> str:
    return str(exc).removeprefix("phone: ")


def _section_of(model: type[pydantic.BaseModel], name: str) -> type[Section] | None:
    """The model of field ``name``'s values (a section or a list of them), if any."""
    field = model.model_fields.get(name)
    annotation = field.annotation if field else None
    if typing.get_origin(annotation) is tuple:
        annotation = typing.get_args(annotation)[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None


# --- loading ------------------------------------------------------------------------


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply environment overrides, validate."""
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(CONFIG_ENV) or (DEFAULT_FILE if Path(DEFAULT_FILE).is_file() else None)
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        raw = _read(file)
        base_dir = file.resolve().parent
    raw, sources = _with_environment(raw, env)
    raw.setdefault("base_dir", str(base_dir))
    return _validated(Config, raw, sources)


def from_mapping(raw: Mapping[str, Any]) -> Config:
    """Build and validate a config from an in-memory mapping (tests, tools)."""
    return _validated(Config, dict(raw))


def with_overrides(cfg: Config, **changes: Any) -> Config:
    """A copy of ``cfg`` with some keys replaced; a section's given as a
    mapping of the keys that change (tests, the demo)."""
    for name, value in changes.items():
        current = getattr(cfg, name, None)
        if isinstance(current, Section) and isinstance(value, Mapping):
            changes[name] = {**dict(current), **value}
    return cfg.replace(**changes)


def _read(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise errors.ConfigError(f"{file}: the top level must be a mapping of keys")
    return loaded


def _with_environment(raw: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``raw`` with the ``IVR_AUTH_*`` variables in ``env`` written over it,
    and the variable each key was taken from."""
    problem = "a list of sections cannot come from the environment; write it in the file"
    for key in ("trunks", "sms.carriers"):
        var = f"{ENV_PREFIX}{key.replace('.', '_')}".upper()
        if var in env:
            raise errors.ConfigError(f"{key} (from {var}): {problem}")
    out, sources = dict(raw), {}
    for name, field in Config.model_fields.items():
        model = _section_of(Config, name)
        if name in ("base_dir", "trunks"):
            continue
        if model is None:
            var = f"{ENV_PREFIX}{name}".upper()
            if var in env:
                out[name], sources[name] = _from_text(env[var], field.annotation), var
            continue
        values = out.get(name) or {}
        if not isinstance(values, dict):
            continue  # reported by validation, with the key's name
        values = dict(values)
        for sub, subfield in model.model_fields.items():
            var = f"{ENV_PREFIX}{name}_{sub}".upper()
            if var in env and _section_of(model, sub) is None:
                values[sub], sources[f"{name}.{sub}"] = _from_text(env[var], subfield.annotation), var
        if values:
            out[name] = values
    return out, sources


def _from_text(text: str, annotation: Any) -> Any:
    """An environment value for a field of type ``annotation``: text for text
    and lists (comma-separated: as YAML, a lone 0501234000 would turn into an
    octal integer), else a YAML scalar; "" unsets an optional value."""
    union = typing.get_origin(annotation) in (types.UnionType, typing.Union)
    options = typing.get_args(annotation) if union else (annotation,)
    if text == "" and type(None) in options:
        return None
    if any(_is_text(option) for option in options):
        return text
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return text


def _is_text(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_text(typing.get_args(annotation)[0])
    return annotation is str or origin in (tuple, Literal)


# --- errors: pydantic's, told as ``key: what is wrong`` ---------------------------


def _validated(model: type[_M], raw: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> _M:
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(_message(model, exc.errors()[0], sources or {})) from exc


_M = typing.TypeVar("_M", bound=Section)


def _message(model: type[Section], error: ErrorDetails, sources: Mapping[str, str]) -> str:
    loc, kind, value, ctx = error["loc"], error["type"], error["input"], error.get("ctx", {})
    key, holder, name = "", model, ""
    inside: type[Section] | None = model
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif inside is not None:
            key = f"{key}.{part}" if key else part
            holder, name, inside = inside, part, _section_of(inside, part)
    field = holder.model_fields.get(name)
    sections = _section_of(holder, name) is not None
    item = bool(loc) and isinstance(loc[-1], int) and not sections
    if item:
        key = key.rpartition("[")[0]  # an item of a list of strings: the list is the key
    if kind == "value_error" and isinstance(ctx["error"], _Invalid):
        return " and ".join(f"{key}.{k}" if key else k for k in ctx["error"].keys) + f": {ctx['error']}"
    if kind == "value_error":
        return f"{key}: {ctx['error']}"
    if kind == "extra_forbidden":
        return f"{key}: unknown key (known keys here: {', '.join(sorted(holder.model_fields))})"
    if kind == "literal_error" and isinstance(value, str) and field is not None:
        return f"{key}: {value!r} is not one of {', '.join(_choices(field.annotation))}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal") and field is not None:
        return f"{key}: {_bounds(field, value)}"
    if kind == "string_too_short":
        return f"{key}: must be at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"{key}: must be at most {ctx['max_length']} characters"
    # Not a value of the key's type: say which variable it came from, if one did.
    if key in sources:
        key = f"{key} (from {sources[key]})"
    return f"{key or 'config'}: {_expected(kind, value, item=item, sections=sections) or error['msg']}"


def _expected(kind: str, value: Any, *, item: bool, sections: bool) -> str | None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("string_type", "literal_error") and item:
        return "expected a list of strings" + ("; put the values in quotes (YAML read a number)" if number else "")
    if kind in ("string_type", "literal_error") and number:
        # YAML reads 0033 as the octal number 27 and 0312345678 as 312345678:
        # turning it back into text would silently change the digits.
        return "expected a string; put the value in quotes (YAML read it as a number)"
    if kind == "tuple_type":
        return f"expected a list of mappings, got {type(value).__name__}" if sections else "expected a list of strings"
    expected = {
        "string_type": "expected a string",
        "literal_error": "expected a string",
        "int_type": "expected a whole number",
        "float_type": "expected a number",
        "bool_type": "expected true or false",
        "model_type": "expected a mapping of keys",
    }.get(kind)
    return expected and f"{expected}, got {type(value).__name__ if kind == 'model_type' else repr(value)}"


def _choices(annotation: Any) -> tuple[str, ...]:
    if typing.get_origin(annotation) is tuple:
        annotation = typing.get_args(annotation)[0]
    return typing.get_args(annotation)


def _bounds(field: pydantic.fields.FieldInfo, value: Any) -> str:
    """What the bounds declared on ``field`` ask for, in a few words."""
    bound = {n: getattr(m, n) for m in field.metadata for n in ("gt", "ge", "le") if getattr(m, n, None) is not None}
    gt, ge, le = bound.get("gt"), bound.get("ge"), bound.get("le")
    if (ge, le) == (1, 65535):
        return f"port {value} is outside 1-65535"
    if le is None and gt is not None:
        return "must be positive" if gt == 0 else f"must be more than {gt:g}"
    if le is None:
        return "may not be negative" if ge == 0 else f"must be at least {ge:g}"
    return f"must be more than {gt:g} and at most {le:g}" if gt is not None else f"must be {ge:g}-{le:g}"
