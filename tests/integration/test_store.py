"""The Store against the real Postgres of the local stack.

The database is shared with other tests and with controllers others may be
running, and ``claim`` takes any queued request of any tenant. So: requests
that need no controller are created as ``inbound`` (never claimed); claims
are repeated until this test's own requests are in hand, and whatever else
they took is put back at once; every tenant a test makes is deleted at the
end (which deletes its requests), so nothing is left queued for a dialer."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

import psycopg
import pytest
from psycopg import conninfo
from psycopg import sql as pgsql

from ivr_auth import connections, crypto, errors, models, reasons, states, trunks
from ivr_auth import store as store_mod
from ivr_auth.store import database, migrate, verifications

pytestmark = pytest.mark.integration

S = states.Status
Conn = psycopg.AsyncConnection[dict[str, Any]]
Store = store_mod.Store
# Ten digits, so that it cannot turn up by chance in the hex of a bytea or a uuid.
CODE = "8642097531"
PHONE = "+819012345678"
ME = "tests/integration/test_store.py"


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
async def made(db: Conn, tenant: tuple[models.Tenant, str]) -> AsyncIterator[list[uuid.UUID]]:
    """Tenants this test made; deleted at the end, and their requests with them."""
    ids = [tenant[0].id]
    yield ids
    await db.execute("DELETE FROM tenants WHERE id = ANY(%s)", [ids])


@pytest.fixture
def me(tenant: tuple[models.Tenant, str], made: list[uuid.UUID]) -> models.Tenant:
    return tenant[0]


@pytest.fixture
async def other(store: Store, made: list[uuid.UUID]) -> models.Tenant:
    created, _ = await store.tenants.create(f"tenant-{uuid.uuid4().hex[:12]}")
    made.append(created.id)
    return created


def new(
    tenant: models.Tenant,
    *,
    method: str = "inbound",
    code: str = CODE,
    ttl_seconds: int = 300,
    max_code_attempts: int = 3,
    max_call_attempts: int = 2,
    idempotency_key: str | None = None,
    request_hash: bytes | None = None,
) -> verifications.NewVerification:
    return verifications.NewVerification(
        tenant_id=tenant.id,
        method=method,
        phone=PHONE,
        line_type="mobile",
        code=code,
        language="ja",
        reference="order-42",
        callback_url=None,
        ttl_seconds=ttl_seconds,
        max_code_attempts=max_code_attempts,
        max_call_attempts=max_call_attempts,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


async def create(store: Store, tenant: models.Tenant, **kwargs: Any) -> models.Verification:
    created = await store.verifications.create(new(tenant, **kwargs))
    assert created.created
    return created.verification


async def row(db: Conn, verification_id: uuid.UUID) -> dict[str, Any]:
    cur = await db.execute("SELECT * FROM verifications WHERE id = %s", [verification_id])
    found = await cur.fetchone()
    assert found is not None
    return found


async def put_back(store: Store, foreign: Iterable[models.Verification]) -> None:
    """Return requests of other tests, claimed by accident, to the queue."""
    for verification in foreign:
        await store.verifications.transition(verification.id, [S.CALLING], S.QUEUED, detail={"put_back_by": ME})


async def claim_rounds(
    store: Store,
    wanted: set[uuid.UUID],
    claimers: Callable[[], Coroutine[Any, Any, list[list[models.Verification]]]],
    *,
    within: float = 10.0,
) -> list[tuple[int, models.Verification]]:
    """Run rounds of ``claimers`` until every wanted request was claimed; put
    back anything else at once. Returns (claimer index, request) for every
    claim of a wanted request, repeats included."""
    got: list[tuple[int, models.Verification]] = []
    async with asyncio.timeout(within):
        while {v.id for _, v in got} != wanted:
            results = await claimers()
            foreign = []
            for index, claimed in enumerate(results):
                for verification in claimed:
                    if verification.id in wanted:
                        got.append((index, verification))
                    else:
                        foreign.append(verification)
            await put_back(store, foreign)
            if {v.id for _, v in got} != wanted:
                await asyncio.sleep(0.02)
    return got


def room(count: int, trunk: str = "test-trunk") -> list[trunks.Offer]:
    """Room for ``count`` calls on a trunk whose shared limits never bind."""
    return [trunks.Offer(trunk, 0, count, rate=1e6, burst=1e6, max_channels=1_000_000)]


async def claim_mine(
    store: Store, wanted: Iterable[models.Verification], owner: str, *, lease_seconds: float = 60.0
) -> dict[uuid.UUID, models.Verification]:
    ids = {v.id for v in wanted}

    async def one() -> list[list[models.Verification]]:
        return [(await store.verifications.claim(owner, "test-node", room(len(ids) + 50), lease_seconds))[0]]

    return {v.id: v for _, v in await claim_rounds(store, ids, one)}


async def claimable(store: Store, verification_id: uuid.UUID) -> bool:
    """Whether a claim takes this request now (and if so, it stays claimed)."""
    claimed, _ = await store.verifications.claim(f"{ME}-probe", "test-node", room(1000), 60.0)
    await put_back(store, [v for v in claimed if v.id != verification_id])
    return any(v.id == verification_id for v in claimed)


def status_events(events: list[verifications.Event]) -> list[tuple[str | None, str | None]]:
    return [(e.from_status, e.to_status) for e in events if e.type == "status"]


# --- migrations -----------------------------------------------------------------------------


async def test_migrate_is_idempotent_and_concurrent_safe(local_stack: connections.Connections, db: Conn) -> None:
    target = database.Database(local_stack.database_url)
    results = await asyncio.gather(*(migrate.migrate(target) for _ in range(3)))

    assert results == [[], [], []]
    cur = await db.execute("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version ORDER BY version")
    assert [(r["version"], r["n"]) for r in await cur.fetchall()] == [(m.version, 1) for m in migrate.available()]
    async with target.dedicated() as plain:
        assert await migrate.current_version(plain) == migrate.latest_version()


async def test_current_version_on_a_store_connection(store: Store) -> None:
    async with store.db.connection() as conn:
        assert await migrate.current_version(conn) == migrate.latest_version()


async def test_concurrent_migrations_of_a_new_database_apply_each_once(
    local_stack: connections.Connections, db: Conn
) -> None:
    name = f"ivr_auth_migrate_{uuid.uuid4().hex[:12]}"
    await db.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        url = conninfo.make_conninfo(local_stack.database_url, dbname=name)
        fresh_db = database.Database(url)

        results = await asyncio.gather(*(migrate.migrate(fresh_db) for _ in range(3)))

        applied = [m.version for r in results for m in r]
        assert applied == list(range(1, migrate.latest_version() + 1))
        assert sum(1 for r in results if r) == 1
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as fresh:
            cur = await fresh.execute("SELECT version FROM schema_migrations ORDER BY version")
            assert [r[0] for r in await cur.fetchall()] == applied
        async with fresh_db.dedicated() as conn:
            assert await migrate.current_version(conn) == migrate.latest_version()
        assert await migrate.migrate(fresh_db) == []
    finally:
        await db.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


# --- create ------------------------------------------------------------------------------------


async def test_create_inserts_a_queued_request_and_a_status_event(store: Store, db: Conn, me: models.Tenant) -> None:
    created = await store.verifications.create(new(me, ttl_seconds=120))
    v = created.verification

    assert created.created
    assert created.code == CODE
    assert v.tenant_id == me.id
    assert v.status is S.QUEUED
    assert (v.method, v.phone, v.line_type, v.language, v.reference) == ("inbound", PHONE, "mobile", "ja", "order-42")
    assert v.code_length == len(CODE)
    assert (v.code_attempts, v.call_attempts, v.max_code_attempts, v.max_call_attempts) == (0, 0, 3, 2)
    assert v.lease_owner is None
    assert v.finished_at is None
    assert dt.timedelta(seconds=119) < v.expires_at - v.created_at <= dt.timedelta(seconds=120)
    assert v.next_attempt_at <= v.expires_at
    assert await store.verifications.get(me.id, v.id) == v
    events = await store.verifications.events(v.id)
    assert [(e.type, e.from_status, e.to_status) for e in events] == [("status", None, "queued")]
    assert events[0].detail == {"method": "inbound", "ttl_seconds": 120}


async def test_the_code_is_never_stored_in_clear(store: Store, db: Conn, me: models.Tenant) -> None:
    v = await create(store, me)
    await store.verifications.log_event(v.id, "note", {"any": "detail"})

    cur = await db.execute("SELECT v::text AS whole FROM verifications v WHERE id = %s", [v.id])
    whole = await cur.fetchone()
    assert whole is not None
    assert CODE not in whole["whole"]
    stored = await row(db, v.id)
    assert stored["code_sealed"] is not None
    for column, value in stored.items():
        if isinstance(value, str):
            assert CODE not in value, column
        if isinstance(value, bytes):
            assert CODE.encode() not in value, column
    cur = await db.execute("SELECT e::text AS whole FROM verification_events e WHERE verification_id = %s", [v.id])
    events = await cur.fetchall()
    assert len(events) == 2
    assert all(CODE not in e["whole"] for e in events)
    assert store.keys.code_matches(v.id, CODE, stored["code_hash"])


async def test_the_sealed_code_opens_only_under_its_request_id(store: Store, db: Conn, me: models.Tenant) -> None:
    v = await create(store, me)
    stored = await row(db, v.id)

    assert store.keys.open_code(v.id, stored["code_sealed"]) == CODE
    with pytest.raises(errors.IvrAuthError):
        store.keys.open_code(uuid.uuid4(), stored["code_sealed"])


async def test_an_idempotent_replay_returns_the_first_request_and_its_code(store: Store, me: models.Tenant) -> None:
    body_hash = store.keys.request_hash(b'{"phone": "+819012345678"}')
    first = await store.verifications.create(new(me, idempotency_key="k-1", request_hash=body_hash))

    again = await store.verifications.create(new(me, code="1111", idempotency_key="k-1", request_hash=body_hash))

    assert first.created
    assert not again.created
    assert again.verification.id == first.verification.id
    assert again.code == CODE
    assert len(await store.verifications.events(first.verification.id)) == 1


async def test_a_replay_with_another_body_is_refused(store: Store, me: models.Tenant) -> None:
    await store.verifications.create(new(me, idempotency_key="k-2", request_hash=store.keys.request_hash(b"a")))

    with pytest.raises(errors.IdempotencyMismatch):
        await store.verifications.create(new(me, idempotency_key="k-2", request_hash=store.keys.request_hash(b"b")))
    with pytest.raises(errors.IdempotencyMismatch):
        await store.verifications.create(new(me, idempotency_key="k-2", request_hash=None))


async def test_a_replay_after_the_request_ended_has_no_code(store: Store, me: models.Tenant) -> None:
    first = await store.verifications.create(new(me, idempotency_key="k-3"))
    await store.verifications.cancel(me.id, first.verification.id)

    again = await store.verifications.create(new(me, idempotency_key="k-3"))

    assert again.verification.id == first.verification.id
    assert again.verification.status is S.CANCELED
    assert again.code is None


async def test_idempotency_keys_are_per_tenant(store: Store, me: models.Tenant, other: models.Tenant) -> None:
    mine = await store.verifications.create(new(me, idempotency_key="shared"))
    theirs = await store.verifications.create(new(other, idempotency_key="shared"))

    assert theirs.created
    assert theirs.verification.id != mine.verification.id


async def test_concurrent_replays_create_one_request(store: Store, me: models.Tenant) -> None:
    body_hash = store.keys.request_hash(b"same body")

    results = await asyncio.gather(
        *(store.verifications.create(new(me, idempotency_key="k-4", request_hash=body_hash)) for _ in range(6))
    )

    assert sum(r.created for r in results) == 1
    assert len({r.verification.id for r in results}) == 1
    assert {r.code for r in results} == {CODE}


# --- tenants and API keys ---------------------------------------------------------------------


async def test_tenant_for_key(store: Store, db: Conn, tenant: tuple[models.Tenant, str], made: list[uuid.UUID]) -> None:
    me, key = tenant
    found = await store.tenants.for_key(key)

    assert found == me
    assert await store.tenants.get(me.id) == me
    cur = await db.execute("SELECT prefix, key_hash FROM api_keys WHERE tenant_id = %s", [me.id])
    stored = await cur.fetchone()
    assert stored is not None
    assert stored["prefix"] == crypto.api_key_prefix(key)
    assert key.encode() not in stored["key_hash"]
    assert bytes(stored["key_hash"]) == store.keys.api_key_hash(key)


async def test_a_second_key_finds_the_same_tenant(
    store: Store, tenant: tuple[models.Tenant, str], made: list[uuid.UUID]
) -> None:
    me, key = tenant
    second = await store.tenants.add_api_key(me.name)

    assert second != key
    assert await store.tenants.for_key(second) == me
    assert await store.tenants.for_key(key) == me
    with pytest.raises(errors.NotFound):
        await store.tenants.add_api_key(f"no-such-tenant-{uuid.uuid4().hex}")


async def test_a_tenant_name_is_unique(store: Store, me: models.Tenant) -> None:
    with pytest.raises(errors.Conflict):
        await store.tenants.create(me.name)


async def test_a_wrong_key_finds_no_tenant(
    store: Store, tenant: tuple[models.Tenant, str], other: models.Tenant
) -> None:
    _, key = tenant
    tag, prefix, secret = key.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    another_key = await store.tenants.add_api_key(other.name)

    assert await store.tenants.for_key(f"{tag}_{prefix}_{flipped}") is None
    assert await store.tenants.for_key(f"{tag}_{prefix}_") is None
    # the right secret under another tenant's prefix
    assert await store.tenants.for_key(f"{tag}_{crypto.api_key_prefix(another_key)}_{secret}") is None
    assert await store.tenants.for_key(f"{tag}_zzzzzzzz_{secret}") is None


@pytest.mark.parametrize("key", ["", "ivra", "Bearer x", "ivra_short_x", "revoked", "ivra__"])
async def test_a_malformed_key_finds_no_tenant(store: Store, key: str) -> None:
    assert await store.tenants.for_key(key) is None


async def test_a_revoked_key_finds_no_tenant(
    store: Store, db: Conn, tenant: tuple[models.Tenant, str], made: list[uuid.UUID]
) -> None:
    me, key = tenant
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = %s", [me.id])

    assert await store.tenants.for_key(key) is None


# --- tenant isolation ---------------------------------------------------------------------------


async def test_a_tenant_sees_only_its_own_requests(store: Store, me: models.Tenant, other: models.Tenant) -> None:
    v = await create(store, me)

    with pytest.raises(errors.NotFound):
        await store.verifications.get(other.id, v.id)
    with pytest.raises(errors.NotFound):
        await store.verifications.cancel(other.id, v.id)
    with pytest.raises(errors.NotFound):
        await store.verifications.check_code(other.id, v.id, CODE, source="api")
    with pytest.raises(errors.NotFound):
        await store.verifications.get(me.id, uuid.uuid4())
    with pytest.raises(errors.NotFound):
        await store.tenants.get(uuid.uuid4())

    after = await store.verifications.get(me.id, v.id)
    assert after.status is S.QUEUED
    assert after.code_attempts == 0


# --- the queue -----------------------------------------------------------------------------------


async def test_claim_marks_calling_and_takes_a_lease(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf")
    before = dt.datetime.now(dt.UTC)

    claimed = (await claim_mine(store, [v], "controller-a", lease_seconds=30))[v.id]

    assert claimed.status is S.CALLING
    assert claimed.call_attempts == v.call_attempts + 1 == 1
    assert claimed.lease_owner == "controller-a"
    assert claimed.node == "test-node"
    assert claimed.lease_expires_at is not None
    assert before + dt.timedelta(seconds=25) < claimed.lease_expires_at < before + dt.timedelta(seconds=35)
    assert claimed.code_sealed is not None
    events = await store.verifications.events(v.id)
    assert status_events(events) == [(None, "queued"), ("queued", "calling")]
    assert events[-1].detail == {"attempt": 1, "controller": "controller-a", "node": "test-node", "trunk": "test-trunk"}
    assert not await claimable(store, v.id)


async def test_claim_takes_no_inbound_requests(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="inbound")

    assert not await claimable(store, v.id)
    assert (await store.verifications.get(me.id, v.id)).status is S.QUEUED


async def test_claim_with_no_room_takes_nothing(store: Store) -> None:
    assert await store.verifications.claim("controller-a", "test-node", [], 30) == ([], 0)


async def test_concurrent_claimers_never_share_a_request(store: Store, db: Conn, me: models.Tenant) -> None:
    mine = [await create(store, me, method="dtmf") for _ in range(20)]
    ids = {v.id for v in mine}

    async def claimers() -> list[list[models.Verification]]:
        return list(
            claimed
            for claimed, _ in await asyncio.gather(
                *(store.verifications.claim(f"claimer-{i}", "test-node", room(3), 60) for i in range(12))
            )
        )

    got = await claim_rounds(store, ids, claimers)

    assert sorted(str(v.id) for _, v in got) == sorted(str(i) for i in ids)  # each exactly once
    for index, v in got:
        assert v.lease_owner == f"claimer-{index}"
        stored = await row(db, v.id)
        assert (stored["status"], stored["lease_owner"], stored["call_attempts"]) == ("calling", v.lease_owner, 1)
        assert status_events(await store.verifications.events(v.id)) == [(None, "queued"), ("queued", "calling")]


async def test_a_request_past_expiry_is_never_claimed_and_expires(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf", ttl_seconds=0)

    assert not await claimable(store, v.id)
    assert not await claimable(store, v.id)
    count = await store.verifications.expire_queued()

    assert count >= 0  # another controller's reaper may have settled it first
    expired = await store.verifications.get(me.id, v.id)
    assert expired.status is S.EXPIRED
    assert expired.reason == "expired"
    assert expired.code_sealed is None
    assert expired.finished_at is not None
    assert expired.call_attempts == 0
    assert status_events(await store.verifications.events(v.id)) == [(None, "queued"), ("queued", "expired")]
    assert await store.verifications.expire_queued() >= 0
    assert (await store.verifications.get(me.id, v.id)).status is S.EXPIRED


async def test_expire_queued_leaves_live_requests_alone(store: Store, me: models.Tenant) -> None:
    v = await create(store, me)

    await store.verifications.expire_queued()

    assert (await store.verifications.get(me.id, v.id)).status is S.QUEUED


async def test_a_request_put_back_for_later_is_not_claimed_before_then(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf")
    await claim_mine(store, [v], "controller-a")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)

    requeued = await store.verifications.transition(
        v.id, [S.CALLING], S.QUEUED, reason=reasons.Reason.BUSY, next_attempt_at=later
    )

    assert requeued is not None
    assert requeued.status is S.QUEUED
    assert requeued.next_attempt_at == later
    assert requeued.lease_owner is None
    assert requeued.lease_expires_at is None
    assert requeued.code_sealed is not None  # still open: the seal stays
    assert not await claimable(store, v.id)


# --- transitions ---------------------------------------------------------------------------------


async def test_transition_is_guarded(store: Store, db: Conn, me: models.Tenant) -> None:
    v = await create(store, me)
    before = await row(db, v.id)

    assert (
        await store.verifications.transition(
            v.id, [S.CALLING, S.IN_CALL], S.HUNG_UP, reason=reasons.Reason.CALLEE_HUNG_UP
        )
        is None
    )
    assert await store.verifications.transition(uuid.uuid4(), [S.QUEUED], S.CANCELED) is None

    assert await row(db, v.id) == before
    assert status_events(await store.verifications.events(v.id)) == [(None, "queued")]


async def test_transition_to_a_terminal_status_wipes_the_seal_and_logs(store: Store, me: models.Tenant) -> None:
    v = await create(store, me)

    done = await store.verifications.transition(
        v.id, [S.QUEUED], S.CANCELED, reason=reasons.Reason.CANCELED, cause=16, detail={"note": "n"}
    )

    assert done is not None
    assert done.status is S.CANCELED
    assert done.reason == "canceled"
    assert done.last_cause == 16
    assert done.code_sealed is None
    assert done.finished_at is not None
    events = await store.verifications.events(v.id)
    assert status_events(events) == [(None, "queued"), ("queued", "canceled")]
    assert events[-1].detail == {"note": "n", "reason": "canceled", "cause": 16}
    # settled: a second change from the old status finds nothing
    assert await store.verifications.transition(v.id, [S.QUEUED], S.EXPIRED) is None
    assert len(await store.verifications.events(v.id)) == 2


async def test_transition_records_the_call(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf")
    await claim_mine(store, [v], "controller-a")

    in_call = await store.verifications.transition(v.id, [S.CALLING], S.IN_CALL, channel_id="chan-1")

    assert in_call is not None
    assert in_call.answered_at is not None
    assert in_call.channel_id == "chan-1"
    assert in_call.lease_owner == "controller-a"  # the call is still this controller's
    hung_up = await store.verifications.transition(v.id, [S.IN_CALL], S.HUNG_UP, cause=16, cause_txt="Normal Clearing")
    assert hung_up is not None
    assert (hung_up.last_cause, hung_up.last_cause_txt) == (16, "Normal Clearing")
    assert hung_up.lease_owner is None
    assert hung_up.lease_expires_at is None
    assert hung_up.channel_id == "chan-1"


async def test_the_call_is_answered_and_ended_in_the_transitions_statement(
    store: Store, db: Conn, me: models.Tenant
) -> None:
    v = await create(store, me, method="dtmf")
    (claimed,) = (await claim_mine(store, [v], "controller-a")).values()
    tenant = await store.calls.start(claimed, controller="controller-a", node="n", trunk="t", channel_id="chan-2")
    assert tenant is not None
    assert tenant.id == me.id
    assert (await row(db, v.id))["channel_id"] == "chan-2"

    await store.verifications.transition(v.id, [S.CALLING], S.IN_CALL, answered_call="chan-2")
    answered = await store.calls.for_request(v.id)
    ended = verifications.CallEnd("chan-2", "verified", 16, "Normal Clearing")
    done = await store.verifications.transition(v.id, [S.IN_CALL], S.VERIFIED, ended_call=ended)
    # The end of a call is recorded even when the request had moved on; the first end stands.
    late = verifications.CallEnd("chan-2", "hung_up", 31, "Normal, unspecified")
    assert await store.verifications.transition(v.id, [S.IN_CALL], S.FAILED, ended_call=late) is None
    (call,) = await store.calls.for_request(v.id)

    assert answered[0].answered_at is not None
    assert answered[0].ended_at is None
    assert done is not None
    assert done.status is S.VERIFIED
    assert (call.outcome, call.cause, call.cause_txt) == ("verified", 16, "Normal Clearing")
    assert call.answered_at == answered[0].answered_at


async def test_every_status_change_is_announced_with_the_request_id(
    store: Store, me: models.Tenant, local_stack: connections.Connections
) -> None:
    v = await create(store, me, method="dtmf")
    heard: list[str] = []
    async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {verifications.STATUS_CHANNEL}")
        await claim_mine(store, [v], "controller-a")
        await store.verifications.heartbeat("controller-a", [v.id], 60)  # no status change
        await store.verifications.transition(v.id, [S.CALLING], S.IN_CALL)
        await store.verifications.cancel(me.id, v.id)
        async for note in listener.notifies(timeout=2.0):
            heard.append(note.payload)
            if len(heard) == 3:
                break

    assert heard == [f"{v.id} calling", f"{v.id} in_call", f"{v.id} canceled"]


# --- leases and orphans ------------------------------------------------------------------------


async def test_heartbeat_extends_the_lease_only_for_its_owner(store: Store, db: Conn, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf")
    claimed = (await claim_mine(store, [v], "owner", lease_seconds=30))[v.id]
    assert claimed.lease_expires_at is not None

    await store.verifications.heartbeat("someone-else", [v.id], 600)
    assert (await row(db, v.id))["lease_expires_at"] == claimed.lease_expires_at

    await store.verifications.heartbeat("owner", [v.id], 600)
    extended = (await row(db, v.id))["lease_expires_at"]
    assert extended > claimed.lease_expires_at + dt.timedelta(seconds=500)

    await store.verifications.heartbeat("owner", [], 600)  # nothing to do
    await store.verifications.transition(v.id, [S.CALLING], S.NO_ANSWER)
    await store.verifications.heartbeat("owner", [v.id], 600)
    assert (await row(db, v.id))["lease_expires_at"] is None


async def test_orphans_are_those_whose_lease_ran_out(store: Store, db: Conn, me: models.Tenant) -> None:
    lost_calling = await create(store, me, method="dtmf")
    lost_in_call = await create(store, me, method="dtmf")
    alive = await create(store, me, method="dtmf")
    await claim_mine(store, [lost_calling, lost_in_call], "gone", lease_seconds=0.05)
    await store.verifications.transition(lost_in_call.id, [S.CALLING], S.IN_CALL, channel_id="chan-lost")
    await claim_mine(store, [alive], "alive", lease_seconds=60)
    await asyncio.sleep(0.2)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)

    async with store.verifications.orphans() as (orphans, conn):
        mine = {o.id: o for o in orphans if o.tenant_id == me.id}
        assert set(mine) == {lost_calling.id, lost_in_call.id}
        await store.verifications.settle_orphan(
            conn, mine[lost_calling.id], S.QUEUED, next_attempt_at=later, detail={"by": ME}
        )
        await store.verifications.settle_orphan(conn, mine[lost_in_call.id], S.ERROR, detail={"by": ME})

    requeued = await store.verifications.get(me.id, lost_calling.id)
    assert requeued.status is S.QUEUED
    assert requeued.lease_owner is None
    assert requeued.lease_expires_at is None
    assert requeued.next_attempt_at == later
    assert requeued.code_sealed is not None
    errored = await store.verifications.get(me.id, lost_in_call.id)
    assert errored.status is S.ERROR
    assert errored.reason == "controller_lost"
    assert errored.lease_owner is None
    assert errored.code_sealed is None
    assert errored.finished_at is not None
    assert status_events(await store.verifications.events(lost_in_call.id))[-1] == ("in_call", "error")
    assert (await store.verifications.events(lost_calling.id))[-1].detail == {"by": ME}
    assert (await store.verifications.get(me.id, alive.id)).status is S.CALLING
    async with store.verifications.orphans() as (orphans, _):
        assert not {o.id for o in orphans} & {lost_calling.id, lost_in_call.id, alive.id}


# --- codes ---------------------------------------------------------------------------------------


async def test_a_wrong_code_counts_an_attempt(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, max_code_attempts=3)

    after, ok = await store.verifications.check_code(me.id, v.id, "0000000000", source="api")

    assert not ok
    assert after.status is S.QUEUED
    assert after.code_attempts == 1
    assert after.code_sealed is not None
    events = await store.verifications.events(v.id)
    assert [(e.type, e.detail) for e in events[1:]] == [("wrong_code", {"source": "api", "attempt": 1})]


async def test_the_last_allowed_wrong_code_fails_the_request(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, max_code_attempts=3)

    results = [await store.verifications.check_code(me.id, v.id, "1", source="api") for _ in range(3)]

    assert [(r.status, r.code_attempts, ok) for r, ok in results] == [
        (S.QUEUED, 1, False),
        (S.QUEUED, 2, False),
        (S.FAILED, 3, False),
    ]
    failed = results[-1][0]
    assert failed.reason == "code_attempts_exhausted"
    assert failed.code_sealed is None
    assert failed.finished_at is not None
    events = await store.verifications.events(v.id)
    assert [e.type for e in events].count("wrong_code") == 3
    assert status_events(events) == [(None, "queued"), ("queued", "failed")]
    with pytest.raises(errors.Conflict):
        await store.verifications.check_code(me.id, v.id, CODE, source="api")


async def test_one_allowed_attempt_fails_at_the_first_wrong_code(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, max_code_attempts=1)

    failed, ok = await store.verifications.check_code(me.id, v.id, "1", source="api")

    assert not ok
    assert failed.status is S.FAILED


async def test_the_right_code_verifies_and_wipes_the_seal(store: Store, db: Conn, me: models.Tenant) -> None:
    v = await create(store, me)
    await store.verifications.check_code(me.id, v.id, "1", source="api")

    verified, ok = await store.verifications.check_code(me.id, v.id, CODE, source="api")

    assert ok
    assert verified.status is S.VERIFIED
    assert verified.reason == "code_matched"
    assert verified.code_attempts == 1
    assert verified.code_sealed is None
    assert verified.finished_at is not None
    assert (await row(db, v.id))["code_sealed"] is None
    events = await store.verifications.events(v.id)
    assert status_events(events) == [(None, "queued"), ("queued", "verified")]
    assert events[-1].detail == {"source": "api", "reason": "code_matched"}


async def test_the_right_code_verifies_a_request_in_a_call(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="voice")
    await claim_mine(store, [v], "controller-a")
    await store.verifications.transition(v.id, [S.CALLING], S.IN_CALL, channel_id="chan-v")

    verified, ok = await store.verifications.check_code(me.id, v.id, CODE, source="call")

    assert ok
    assert verified.status is S.VERIFIED
    assert verified.lease_owner is None


@pytest.mark.parametrize("ending", [S.VERIFIED, S.FAILED, S.CANCELED, S.EXPIRED])
async def test_no_code_is_checked_on_a_terminal_request(store: Store, me: models.Tenant, ending: states.Status) -> None:
    v = await create(store, me, max_code_attempts=1)
    await store.verifications.transition(v.id, [S.QUEUED], ending)

    with pytest.raises(errors.Conflict):
        await store.verifications.check_code(me.id, v.id, CODE, source="api")
    with pytest.raises(errors.Conflict):
        await store.verifications.check_code(me.id, v.id, "1", source="api")

    after = await store.verifications.get(me.id, v.id)
    assert after.status is ending
    assert after.code_attempts == 0


async def test_no_code_is_checked_past_expiry(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, ttl_seconds=0)

    with pytest.raises(errors.Conflict, match="expired"):
        await store.verifications.check_code(me.id, v.id, CODE, source="api")

    assert (await store.verifications.get(me.id, v.id)).code_attempts == 0


# --- cancel --------------------------------------------------------------------------------------


async def test_cancel_a_queued_request(store: Store, me: models.Tenant) -> None:
    v = await create(store, me)

    canceled = await store.verifications.cancel(me.id, v.id)

    assert canceled.status is S.CANCELED
    assert canceled.reason == "canceled"
    assert canceled.code_sealed is None
    assert canceled.finished_at is not None
    events = await store.verifications.events(v.id)
    assert status_events(events) == [(None, "queued"), ("queued", "canceled")]
    assert events[-1].detail == {"by": "api", "reason": "canceled"}


async def test_cancel_sends_a_notification_to_the_controllers(
    store: Store, local_stack: connections.Connections, me: models.Tenant
) -> None:
    v = await create(store, me)
    async with store.db.listen(["ivr_auth_cancel"]) as notes:
        await store.verifications.cancel(me.id, v.id)

        seen = []
        async with asyncio.timeout(5):
            async for note in notes:
                seen.append(note.payload)
                if note.payload == str(v.id):
                    break
        assert str(v.id) in seen


async def test_a_lost_listen_connection_ends_its_notifications_with_store_unavailable(store: Store, db: Conn) -> None:
    async with store.db.listen(["ivr_auth_cancel"]) as notes:
        cur = await db.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN \"ivr_auth_cancel\"' AND pid <> pg_backend_pid()"
        )
        pids = [r["pid"] for r in await cur.fetchall()]
        for pid in pids:
            await db.execute("SELECT pg_terminate_backend(%s)", [pid])

        async def drain() -> None:
            async with asyncio.timeout(5):
                async for _ in notes:
                    pass

        with pytest.raises(errors.StoreUnavailable):
            await drain()


@pytest.mark.parametrize("ending", [S.VERIFIED, S.FAILED, S.CANCELED, S.EXPIRED])
async def test_cancel_of_a_terminal_request_is_a_conflict(
    store: Store, me: models.Tenant, ending: states.Status
) -> None:
    v = await create(store, me)
    await store.verifications.transition(v.id, [S.QUEUED], ending)

    with pytest.raises(errors.Conflict, match=ending.value):
        await store.verifications.cancel(me.id, v.id)

    assert (await store.verifications.get(me.id, v.id)).status is ending


async def test_cancel_a_request_in_a_call(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf")
    await claim_mine(store, [v], "controller-a")

    canceled = await store.verifications.cancel(me.id, v.id)

    assert canceled.status is S.CANCELED
    assert status_events(await store.verifications.events(v.id))[-1] == ("calling", "canceled")


async def test_cancel_releases_the_lease(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf")
    await claim_mine(store, [v], "controller-a")

    canceled = await store.verifications.cancel(me.id, v.id)

    assert (canceled.lease_owner, canceled.lease_expires_at) == (None, None)


# --- events ----------------------------------------------------------------------------


async def test_log_event_keeps_its_detail(store: Store, me: models.Tenant) -> None:
    v = await create(store, me)

    await store.verifications.log_event(v.id, "note", {"when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "n": 1})

    last = (await store.verifications.events(v.id))[-1]
    assert (last.type, last.from_status, last.to_status) == ("note", None, None)
    assert last.detail == {"when": "2024-01-01 00:00:00+00:00", "n": 1}


async def test_a_call_never_placed_goes_back_uncounted(store: Store, me: models.Tenant) -> None:
    v = await create(store, me, method="dtmf")
    claimed = (await claim_mine(store, [v], "controller-a", lease_seconds=30))[v.id]
    channel = f"ivrauth-{v.id.hex}-1"
    await store.calls.start(claimed, controller="controller-a", node="n", trunk="t", channel_id=channel)

    assert await store.verifications.requeue_unplaced(v.id, channel, "ARI unreachable", delay=60)

    after = await store.verifications.get(me.id, v.id)
    assert after.status is S.QUEUED
    assert after.call_attempts == 0
    assert after.lease_owner is None
    assert await store.calls.for_request(v.id) == []  # the next attempt may use the same channel id
    events = await store.verifications.events(v.id)
    assert status_events(events)[-1] == ("calling", "queued")
    assert events[-1].detail == {"reason": "not_placed", "error": "ARI unreachable"}
    # Only from calling: a request settled meanwhile is left alone.
    assert not await store.verifications.requeue_unplaced(v.id, channel, "again", delay=60)
