"""Inbound caller-ID verification: who is calling which published number,
and which pending request that call settles.

One piece of logic behind two entry points: the Stasis flow
(``flows/inbound.py``) and the FastAGI server (``agi.py``) for operators who
keep their own dialplan. The caller ID given here is whatever Asterisk put
in ``CALLERID(num)``: from ``P-Asserted-Identity`` when the trunk endpoint
trusts it (``trunk.trusted``, PJSIP ``trust_id_inbound``), else from
``From``. A withheld number never verifies anything.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import uuid

from ivr_auth import config, errors, models, phone, reasons, states
from ivr_auth import store as store_mod

logger = logging.getLogger(__name__)

S = states.Status


class Result(enum.StrEnum):
    VERIFIED = "verified"
    # Matched a request that also wants the code keyed on the call.
    CODE_REQUIRED = "code_required"
    NOT_FOUND = "not_found"
    ANONYMOUS = "anonymous"
    ERROR = "error"


class CheckResult(enum.StrEnum):
    VERIFIED = "verified"
    WRONG_CODE = "wrong_code"
    # The wrong code used up the request's attempts.
    FAILED = "failed"
    # Settled, expired or canceled already: no code can be checked.
    CLOSED = "closed"
    NOT_FOUND = "not_found"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class Match:
    result: Result
    language: str
    verification: models.Verification | None = None
    caller: str | None = None
    did: str | None = None
    # Missed-call mode: the request is verified; reject the call unanswered.
    reject_unanswered: bool = False


def shared_number(cfg: config.Config, did: str) -> bool:
    return did in {phone.lenient_e164(n, cfg.default_country) for n in cfg.inbound.numbers}


def number_to_call(cfg: config.Config, tenant: models.Tenant) -> str | None:
    """The published number (E.164) a tenant's users call: the tenant's own
    first, else the config's shared ones; None when neither has any."""
    for number in (*tenant.inbound_numbers, *cfg.inbound.numbers):
        e164 = phone.lenient_e164(number, cfg.default_country)
        if e164 is not None:
            return e164
    return None


async def match_call(
    store: store_mod.Store,
    cfg: config.Config,
    *,
    did: str,
    caller: str | None,
    source: str,
    channel_id: str | None = None,
) -> Match:
    """Find the pending request for a call from ``caller`` to ``did`` and,
    unless it wants the code keyed as well, verify it."""
    did_e164 = phone.lenient_e164(did, cfg.default_country)
    language = await _language_for(store, cfg, did_e164)
    log = {"channel_id": channel_id, "source": source}
    if phone.withheld(caller):
        logger.info("inbound call with caller ID withheld (to %s)", did, extra=log)
        return Match(Result.ANONYMOUS, language, did=did_e164)
    caller_e164 = phone.lenient_e164(caller or "", cfg.default_country)
    if did_e164 is None or caller_e164 is None:
        logger.info("inbound call from an unreadable number or to an unknown DID (%s)", did, extra=log)
        return Match(Result.NOT_FOUND, language, caller=caller_e164, did=did_e164)
    pending = await store.verifications.inbound_pending(caller_e164, did_e164)
    if pending is None:
        logger.info("inbound call from %s to %s matches no pending request", phone.mask(caller_e164), did, extra=log)
        return Match(Result.NOT_FOUND, language, caller=caller_e164, did=did_e164)
    log["verification_id"] = str(pending.id)
    if pending.ask_code:
        return Match(Result.CODE_REQUIRED, pending.language, pending, caller_e164, did_e164)
    tenant = await store.tenants.get(pending.tenant_id)
    verified = await store.verifications.transition(
        pending.id,
        [S.QUEUED],
        S.VERIFIED,
        reason=reasons.Reason.CALLER_ID_MATCHED,
        channel_id=channel_id,
        detail={"source": source, "did": did_e164, "missed_call": tenant.missed_call},
    )
    if verified is None:  # canceled or expired just now
        return Match(Result.NOT_FOUND, pending.language, caller=caller_e164, did=did_e164)
    logger.info("inbound call from %s verified request %s", phone.mask(caller_e164), pending.id, extra=log)
    return Match(
        Result.VERIFIED,
        verified.language,
        verified,
        caller_e164,
        did_e164,
        reject_unanswered=tenant.missed_call,
    )


async def check_code(
    store: store_mod.Store, verification_id: uuid.UUID, code: str, *, source: str
) -> tuple[CheckResult, models.Verification | None]:
    """A code keyed into an operator's dialplan for a request found by
    ``match_call``; same rules as ``POST .../check``."""
    # Nothing keyed (Read() timed out) is a wrong code too: it counts, so
    # that a dialplan asking again cannot loop for ever.
    try:
        verification, ok = await store.verifications.check_code(None, verification_id, code, source=source)
    except errors.NotFound:
        return CheckResult.NOT_FOUND, None
    except errors.Conflict:
        return CheckResult.CLOSED, None
    if ok:
        return CheckResult.VERIFIED, verification
    if verification.status is S.FAILED:
        return CheckResult.FAILED, verification
    return CheckResult.WRONG_CODE, verification


async def _language_for(store: store_mod.Store, cfg: config.Config, did: str | None) -> str:
    """Before any request is found, speak the language of whoever publishes the number."""
    if did is not None:
        for tenant in await store.tenants.for_did(did, shared=shared_number(cfg, did)):
            if tenant.default_language in cfg.languages:
                return tenant.default_language
    return cfg.default_language
