"""``ivr-auth asterisk-config``: the Asterisk configuration ivr-auth needs,
as files an operator ``#include``s from their own ``/etc/asterisk``.

Each file starts with comments saying which of the operator's files
includes it and why. Nothing in them can take the place of the operator's
own settings: contexts and the ARI user are named ``ivr-auth*``, trunks
after the names in ivr-auth.yaml, and settings of a section the operator
already has are added to it with Asterisk's ``[section](+)``. The embedded
stack of the development kit includes the very same files.

Templates are in ``data/include/``; ``{{name}}`` is a value from the
config (Asterisk itself never writes ``{{``). A value may not break a line,
which would start a setting of its own; the config's own checks already
refuse ``;`` and line breaks in the values that land here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from ivr_auth import config, data, errors, phone, prompts, trunks
from ivr_auth.ari import release, slots

DEFAULT_VERSION = (22,)
INSTALL_NAME = "ivr-auth-INSTALL.txt"
# Where calls from the trunks enter the dialplan.
INBOUND_CONTEXT = "ivr-auth-inbound"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Values that are whole generated sections may span lines.
MULTILINE_SUFFIX = "_section"

# What ivr-auth uses, for an Asterisk that loads only what it is told
# (autoload = no); with autoload = yes these lines change nothing.
MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core plumbing",
        (
            "res_sorcery_config.so",
            "res_sorcery_memory.so",
            "res_sorcery_astdb.so",
            "res_timing_timerfd.so",
            "res_rtp_asterisk.so",
            "res_http_websocket.so",
            "func_callerid.so",
            "func_channel.so",
            "func_strings.so",
            "func_logic.so",
            "func_hangupcause.so",
            "pbx_config.so",
        ),
    ),
    (
        "codecs and file formats (prompts are 8 kHz wav)",
        (
            "codec_ulaw.so",
            "codec_alaw.so",
            "codec_a_mu.so",
            "codec_gsm.so",
            "codec_resample.so",
            "format_wav.so",
            "format_pcm.so",
            "format_gsm.so",
            "format_sln.so",
        ),
    ),
    (
        "SIP",
        (
            "res_pjproject.so",
            "res_pjsip.so",
            "res_pjsip_session.so",
            "res_pjsip_pubsub.so",
            "chan_pjsip.so",
            "res_pjsip_sdp_rtp.so",
            "res_pjsip_nat.so",
            "res_pjsip_caller_id.so",
            "res_pjsip_rfc3326.so",
            "res_pjsip_dtmf_info.so",
            "res_pjsip_header_funcs.so",
            "res_pjsip_endpoint_identifier_ip.so",
            "res_pjsip_endpoint_identifier_user.so",
            "res_pjsip_authenticator_digest.so",
            "res_pjsip_outbound_authenticator_digest.so",
            "res_pjsip_dlg_options.so",
            "func_pjsip_endpoint.so",
        ),
    ),
    (
        "ARI and Stasis",
        (
            "res_stasis.so",
            "res_stasis_answer.so",
            "res_stasis_playback.so",
            "res_stasis_recording.so",
            "res_stasis_snoop.so",
            "res_stasis_device_state.so",
            "app_stasis.so",
            "res_ari.so",
            "res_ari_model.so",
            "res_ari_applications.so",
            "res_ari_asterisk.so",
            "res_ari_bridges.so",
            "res_ari_channels.so",
            "res_ari_endpoints.so",
            "res_ari_events.so",
            "res_ari_playbacks.so",
            "res_ari_recordings.so",
            "res_ari_sounds.so",
            "res_ari_device_states.so",
            "bridge_simple.so",
            "bridge_softmix.so",
            "bridge_native_rtp.so",
            "bridge_holding.so",
        ),
    ),
    (
        "dialplan applications of ivr-auth-extensions.conf (AMD, FastAGI and its prompts)",
        ("app_amd.so", "app_playback.so", "app_read.so", "res_speech.so", "res_agi.so", "func_module.so"),
    ),
)
WEBSOCKET_CLIENT = "res_websocket_client.so"
# Offers an inbound call to every controller at once (ivr-auth-inbound falls
# back to trying them in turn without it), from 20.17, 22.7 and 23.1 on.
STASIS_BROADCAST = ("res_stasis_broadcast.so", "app_stasis_broadcast.so")


@dataclass(frozen=True)
class IncludeFile:
    name: str
    # The operator's file in /etc/asterisk that includes it.
    into: str
    text: str
    # Holds a password: written 0600.
    secret: bool
    # One line for the install notes.
    purpose: str

    @property
    def include_line(self) -> str:
        return f"#include {self.name}"


def render(template: str, values: Mapping[str, str], *, source: str = "template") -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise errors.StackError(f"{source}: no value for placeholder {{{{{name}}}}}")
        value = values[name]
        if not name.endswith(MULTILINE_SUFFIX) and ("\n" in value or "\r" in value):
            raise errors.StackError(f"{source}: the value for {name} may not contain a line break")
        return value

    return _PLACEHOLDER.sub(fill, template)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def parse_version(text: str) -> tuple[int, ...]:
    """``22``, ``22.10`` or ``20.13.1`` as a tuple of numbers."""
    parts = text.strip().split(".")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        raise errors.ConfigError(f"Asterisk version {text!r} is not like 22 or 22.10")
    return tuple(int(p) for p in parts)


def needs_websocket_client(version: Sequence[int]) -> bool:
    """From 22.3, 21.8 and 20.13 on, res_ari will not load without
    res_websocket_client; older Asterisks log an error for a line naming it."""
    named = release.Release(tuple(version) or DEFAULT_VERSION, "")
    return named.has(release.Feature.WEBSOCKET_CLIENT_MODULE)


def has_stasis_broadcast(version: Sequence[int]) -> bool:
    named = release.Release(tuple(version) or DEFAULT_VERSION, "")
    return named.has(release.Feature.STASIS_BROADCAST)


def modules(version: Sequence[int] = DEFAULT_VERSION) -> list[str]:
    loaded = [name for _, names in MODULES for name in names]
    if needs_websocket_client(version):
        loaded.insert(loaded.index("res_ari.so"), WEBSOCKET_CLIENT)
    if has_stasis_broadcast(version):
        after = loaded.index("app_stasis.so") + 1
        loaded[after:after] = STASIS_BROADCAST
    return loaded


def _identification(trunk: config.TrunkConfig) -> tuple[str, str]:
    """What tells this trunk's inbound calls from others': the identify
    section's match line, and lines for the endpoint (an ACL)."""
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    if trunk.identify == "ip_port":
        return f"match = {host}:{trunk.port}", ""
    if trunk.identify == "header":
        # An identify's match and match_header are either-or: anyone who
        # sends the header would be this trunk, so the endpoint admits its
        # host's address only (anything else gets 403). Header before ip:
        # else the ip identify of another trunk (or of one of the operator's
        # own endpoints) on that address takes the call first.
        acl = (
            "; Identified by a header: the type = global section of pjsip.conf needs\n"
            "; header before ip in endpoint_identifier_order (Asterisk's default is\n"
            "; ip,username,anonymous; header,ip,username,anonymous will do).\n"
            f"deny = 0.0.0.0/0.0.0.0\ndeny = ::/0\npermit = {trunk.host}\n"
        )
        return f"match_header = {trunk.identify_header}", acl
    return f"match = {trunk.host}", ""


def trunk_section(trunk: config.TrunkConfig) -> str:
    """pjsip.conf sections for one trunk: endpoint, aor, identify (by the
    host's address, its address and port, or a header: ``identify``) and,
    with credentials, auth. Every value in them was checked for ';' and
    line breaks when the config was validated."""
    # ";" starts a comment in Asterisk config files; "\\;" is a literal one.
    contact_params = "\\;transport=tcp" if trunk.transport == "tcp" else ""
    auth_ref = f"outbound_auth = {trunk.name}-auth" if trunk.username else ""
    match, acl = _identification(trunk)
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    auth = (
        f"\n[{trunk.name}-auth]\ntype = auth\nauth_type = userpass\n"
        f"username = {trunk.username}\npassword = {trunk.password}\n"
        if trunk.username
        else ""
    )
    return f"""[{trunk.name}]
type = endpoint
transport = {trunk.pjsip_transport or f"transport-{trunk.transport}"}
context = {INBOUND_CONTEXT}
disallow = all
allow = ulaw,alaw
dtmf_mode = rfc4733
direct_media = no
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes
trust_id_inbound = {"yes" if trunk.trusted else "no"}
send_pai = no
aors = {trunk.name}
{acl}{auth_ref}

[{trunk.name}]
type = aor
contact = sip:{host}:{trunk.port}{contact_params}

[{trunk.name}]
type = identify
endpoint = {trunk.name}
{match}
{auth}"""


def agi_routes(cfg: config.Config) -> str:
    """Dialplan lines sending ``inbound.agi_numbers`` to the FastAGI example
    context, in each form a trunk may deliver a number in the Request-URI
    (national, or E.164 without its plus, which ``_+X.`` strips)."""
    lines = []
    for number in cfg.inbound.agi_numbers:
        parsed = phonenumbers.parse(number, cfg.default_country)
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        forms = dict.fromkeys([phone.format_for_trunk(e164, "national", cfg.default_country), e164.removeprefix("+")])
        lines += [f"exten => {form},1,Goto(ivr-auth-agi,${{EXTEN}},1)" for form in forms]
    return "\n".join(lines) if lines else "; (no inbound.agi_numbers configured)"


def values(cfg: config.Config, ari_password: str) -> dict[str, str]:
    """The placeholders' values, from the config."""
    agi_host, agi_port = cfg.agi_host_port() or ("127.0.0.1", 4573)
    shipped = str(prompts.SHIPPED_DIR)
    if any(c in shipped for c in ",&;|() \t"):
        raise errors.ConfigError(
            f"the prompt directory {shipped} has a character the dialplan cannot quote; install ivr-auth elsewhere"
        )
    return {
        "ari_username": cfg.ari.username,
        "ari_password": ari_password,
        "ari_app": cfg.ari.app,
        **trunks.sip_timers(cfg.dialer.trunk_timeout_seconds),
        "trunks_section": "\n".join(trunk_section(trunk) for trunk in cfg.outbound_trunks),
        "inbound_app": cfg.inbound.app,
        "inbound_slots": str(cfg.inbound.slots),
        "inbound_app_filter": slots.filter_regex(cfg.inbound.app),
        "inbound_broadcast_timeout_ms": str(cfg.inbound.broadcast_timeout_ms),
        # An IPv6 address in a URL keeps its brackets.
        "agi_host": f"[{agi_host}]" if ":" in agi_host else agi_host,
        "agi_port": str(agi_port),
        "agi_routes_section": agi_routes(cfg),
        "prompts_dir": shipped,
    }


def _modules_text(version: Sequence[int]) -> str:
    written = ".".join(map(str, version))
    lines = [
        "; ivr-auth: the Asterisk modules ivr-auth uses.",
        "; Where it goes: in /etc/asterisk/modules.conf, after its [modules] section,",
        "; add the line",
        ";   #include ivr-auth-modules.conf",
        "; Why: with autoload = no, Asterisk loads only what it is told; with",
        "; autoload = yes (Debian's stock modules.conf) these lines change nothing.",
        "; Keep your own noload lines from unloading any of them.",
        f"; Written for Asterisk {written}: from 22.3, 21.8 and 20.13 on, res_ari needs",
        f"; {WEBSOCKET_CLIENT}, which older versions do not have (regenerate",
        "; with --asterisk-version after an upgrade). From 23.1, 22.7 and 20.17 on,",
        "; StasisBroadcast offers inbound calls to every controller at once.",
        "[modules](+)",
    ]
    wanted = set(modules(version))
    for comment, names in MODULES:
        lines += ["", f"; {comment}"]
        for name in names:
            if name == "res_ari.so" and WEBSOCKET_CLIENT in wanted:
                lines.append(f"load = {WEBSOCKET_CLIENT}")
            lines.append(f"load = {name}")
            if name == "app_stasis.so":
                lines += [f"load = {extra}" for extra in STASIS_BROADCAST if extra in wanted]
    return "\n".join(lines) + "\n"


# name, the operator's file it goes into, whether it holds a password, what it is for
_TEMPLATES = (
    ("ivr-auth-ari.conf", "ari.conf", True, "the ARI user (ari.username, ari.password) and ARI's general settings"),
    ("ivr-auth-http.conf", "http.conf", False, "enables Asterisk's HTTP server for ARI and raises its session limit"),
    ("ivr-auth-pjsip.conf", "pjsip.conf", False, "the trunks: endpoint, aor, identify (and auth) each"),
    ("ivr-auth-pjsip-system.conf", "pjsip.conf", False, "PJSIP's INVITE timers (timer B = the trunk time-out)"),
    ("ivr-auth-extensions.conf", "extensions.conf", False, "the contexts ivr-auth-inbound, ivr-auth-agi, ivr-auth-amd"),
)


def generate(cfg: config.Config, ari_password: str, asterisk_version: Sequence[int] | None = None) -> list[IncludeFile]:
    """Every include file, for an Asterisk of ``asterisk_version`` (None: 22)."""
    filled = values(cfg, ari_password)
    files = []
    for name, into, secret, purpose in _TEMPLATES:
        template = data.INCLUDE_DIR / name
        text = render(template.read_text(), filled, source=str(template))
        if name == "ivr-auth-pjsip.conf":
            secret = any(t.password for t in cfg.outbound_trunks)
        files.append(IncludeFile(name, into, text, secret, purpose))
    version = tuple(asterisk_version) if asterisk_version else DEFAULT_VERSION
    files.append(
        IncludeFile("ivr-auth-modules.conf", "modules.conf", _modules_text(version), False, "the modules to load")
    )
    return files


def install_text(files: Sequence[IncludeFile]) -> str:
    lines = [
        "ivr-auth beside your Asterisk",
        "",
        "Copy the ivr-auth-*.conf files into /etc/asterisk (readable by the user",
        "Asterisk runs as; the ones holding passwords mode 0600, owned by it), then",
        "add each #include line at the end of the file named, after that file's",
        "own sections. Your files keep everything else; nothing here replaces a",
        "section of yours.",
        "",
    ]
    for f in files:
        secret = " (holds a password)" if f.secret else ""
        lines += [f"{f.name}{secret}: {f.purpose}", f"  in /etc/asterisk/{f.into} add:  {f.include_line}", ""]
    lines += [
        "If your pjsip.conf already has a type = system section, leave",
        "ivr-auth-pjsip-system.conf out and set its timer_t1 and timer_b in yours.",
        "",
        "Then restart Asterisk (modules and PJSIP's timers are read at start-up),",
        "and run `ivr-auth doctor`: it checks over ARI that the modules are loaded,",
        "the trunks' endpoints exist and enter ivr-auth-inbound, and PJSIP's timers",
        "match the config.",
    ]
    return "\n".join(lines) + "\n"


def write(files: Sequence[IncludeFile], out: Path, *, force: bool = False) -> list[Path]:
    """Write ``files`` and the install notes into ``out``; refuse, writing
    nothing, when one of them exists, unless ``force``."""
    contents = [(f.name, f.text, f.secret) for f in files] + [(INSTALL_NAME, install_text(files), False)]
    targets = [out / name for name, _, _ in contents]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise errors.IvrAuthError(
            f"{', '.join(str(t) for t in existing)} already exist(s); ivr-auth never writes over a file that "
            "may be yours: choose another --out directory, or pass --force to overwrite them"
        )
    out.mkdir(parents=True, exist_ok=True)
    for target, (_, text, secret) in zip(targets, contents, strict=True):
        write_file(target, text, secret=secret)
    return targets


def write_file(target: Path, text: str, *, secret: bool) -> None:
    """Write ``text``; a secret file is 0600 from its first byte."""
    mode = 0o600 if secret else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(target, mode)
