-- Named queries, loaded once by ivr_auth/store/sql.py. Each block starts
-- with "-- name: NAME"; parameters are %(name)s (a literal percent is %%).

-- name: create_tenant
INSERT INTO tenants (name, caller_id, default_language)
VALUES (%(name)s, %(caller_id)s, %(default_language)s)
RETURNING *;

-- name: tenant_by_name
SELECT * FROM tenants WHERE name = %(name)s;

-- name: create_api_key
INSERT INTO api_keys (tenant_id, prefix, key_hash)
VALUES (%(tenant_id)s, %(prefix)s, %(key_hash)s)
RETURNING id;

-- name: api_key_by_prefix
SELECT k.key_hash, t.*
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.prefix = %(prefix)s AND k.revoked_at IS NULL;

-- name: insert_verification
-- Returns nothing when the tenant already used this Idempotency-Key.
WITH inserted AS (
    INSERT INTO verifications (
        id, tenant_id, method, phone, line_type, code_hash, code_sealed, code_length, language,
        reference, callback_url, status, max_code_attempts, max_call_attempts,
        idempotency_key, request_hash, expires_at, inbound_number, ask_code
    ) VALUES (
        %(id)s, %(tenant_id)s, %(method)s, %(phone)s, %(line_type)s, %(code_hash)s, %(code_sealed)s,
        %(code_length)s, %(language)s, %(reference)s, %(callback_url)s, 'queued', %(max_code_attempts)s,
        %(max_call_attempts)s, %(idempotency_key)s, %(request_hash)s,
        now() + make_interval(secs => %(ttl_seconds)s), %(inbound_number)s, %(ask_code)s
    )
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING *
), event AS (
    INSERT INTO verification_events (verification_id, type, to_status, detail)
    SELECT id, 'status', status, jsonb_build_object('method', method, 'ttl_seconds', %(ttl_seconds)s::int)
    FROM inserted
)
SELECT * FROM inserted;

-- name: verification_by_idempotency_key
SELECT * FROM verifications WHERE tenant_id = %(tenant_id)s AND idempotency_key = %(idempotency_key)s;

-- name: verification_for_tenant
SELECT * FROM verifications WHERE id = %(id)s AND tenant_id = %(tenant_id)s;

-- name: verification_by_id
SELECT * FROM verifications WHERE id = %(id)s;

-- name: lock_verification
SELECT * FROM verifications WHERE id = %(id)s AND tenant_id = %(tenant_id)s FOR UPDATE;

-- name: lock_verification_by_id
SELECT * FROM verifications WHERE id = %(id)s FOR UPDATE;

-- name: transition
-- Moves a request from one of from_statuses to to_status and logs the event,
-- in one statement. No row: the request was not in any of from_statuses
-- (canceled, expired or settled by someone else meanwhile).
WITH old AS (
    SELECT id, status FROM verifications
    WHERE id = %(id)s AND status = ANY(%(from_statuses)s::text[])
    FOR UPDATE
), updated AS (
    UPDATE verifications v SET
        status = %(to_status)s::text,
        updated_at = now(),
        answered_at = CASE WHEN %(to_status)s::text = 'in_call' THEN now() ELSE v.answered_at END,
        delivered_at = CASE WHEN %(to_status)s::text = 'delivered' THEN now() ELSE v.delivered_at END,
        answered_by = coalesce(%(answered_by)s::text, v.answered_by),
        -- a call that failed on its trunk gives its attempt back
        call_attempts = CASE WHEN %(uncounted)s::boolean THEN greatest(v.call_attempts - 1, 0)
                             ELSE v.call_attempts END,
        finished_at = CASE WHEN %(terminal)s::boolean THEN now() ELSE v.finished_at END,
        code_sealed = CASE WHEN %(terminal)s::boolean THEN NULL ELSE v.code_sealed END,
        next_attempt_at = coalesce(%(next_attempt_at)s::timestamptz, v.next_attempt_at),
        lease_owner = CASE WHEN %(release)s::boolean THEN NULL ELSE v.lease_owner END,
        lease_expires_at = CASE WHEN %(release)s::boolean THEN NULL ELSE v.lease_expires_at END,
        channel_id = coalesce(%(channel_id)s::text, v.channel_id),
        reason = coalesce(%(reason)s::text, v.reason),
        last_cause = coalesce(%(cause)s::int, v.last_cause),
        last_cause_txt = coalesce(%(cause_txt)s::text, v.last_cause_txt)
    FROM old WHERE v.id = old.id
    RETURNING v.*, old.status AS old_status
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', old_status, status, %(detail)s::jsonb FROM updated
)
SELECT * FROM updated;

-- name: claim
-- Takes up to %(limit)s due requests for this controller; SKIP LOCKED lets
-- several controllers claim from one queue without waiting on each other.
WITH picked AS (
    SELECT id FROM verifications
    WHERE status = 'queued' AND next_attempt_at <= now() AND expires_at > now()
      AND method IN ('dtmf', 'voice')
    ORDER BY next_attempt_at, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE verifications v SET
        status = 'calling',
        updated_at = now(),
        call_attempts = v.call_attempts + 1,
        lease_owner = %(owner)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        node = %(node)s
    FROM picked WHERE v.id = picked.id
    RETURNING v.*
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', 'queued', 'calling',
           jsonb_build_object('attempt', call_attempts, 'controller', %(owner)s::text, 'node', %(node)s::text)
    FROM updated
)
SELECT * FROM updated;

-- name: heartbeat
UPDATE verifications SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = ANY(%(ids)s::uuid[]) AND lease_owner = %(owner)s AND status IN ('calling', 'in_call');

-- name: expire_queued
-- Requests nobody is calling whose time ran out: still queued (or, for
-- inbound, still waiting for the call), or read out and never checked.
WITH old AS (
    SELECT id, status FROM verifications
    WHERE status IN ('queued', 'delivered') AND expires_at <= now()
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE verifications v SET status = 'expired', reason = 'expired', updated_at = now(), finished_at = now(),
        code_sealed = NULL
    FROM old WHERE v.id = old.id
    RETURNING v.*, old.status AS old_status
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', old_status, 'expired', '{}'::jsonb FROM updated
)
SELECT * FROM updated;

-- name: orphans
-- Requests in a call whose controller stopped renewing its lease.
SELECT * FROM verifications
WHERE status IN ('calling', 'in_call') AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT 100
FOR UPDATE SKIP LOCKED;

-- name: record_wrong_code
UPDATE verifications SET code_attempts = code_attempts + 1, updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: log_event
INSERT INTO verification_events (verification_id, type, detail)
VALUES (%(id)s, %(type)s, %(detail)s::jsonb);

-- name: events_for
SELECT id, at, type, from_status, to_status, detail FROM verification_events
WHERE verification_id = %(id)s ORDER BY id;

-- name: start_call_attempt
INSERT INTO call_attempts (verification_id, attempt, controller, node, trunk, channel_id)
VALUES (%(id)s, %(attempt)s, %(controller)s, %(node)s, %(trunk)s, %(channel_id)s);

-- name: answer_call_attempt
UPDATE call_attempts SET answered_at = clock_timestamp() WHERE channel_id = %(channel_id)s;

-- name: end_call_attempt
UPDATE call_attempts SET ended_at = clock_timestamp(), outcome = %(outcome)s, cause = %(cause)s,
    cause_txt = %(cause_txt)s
WHERE channel_id = %(channel_id)s AND ended_at IS NULL;

-- name: calls_for
SELECT attempt, node, trunk, channel_id, started_at, answered_at, ended_at, outcome, cause, cause_txt
FROM call_attempts WHERE verification_id = %(id)s ORDER BY attempt, id;

-- name: notify_queue
SELECT pg_notify('ivr_auth_queue', '');

-- name: notify_cancel
SELECT pg_notify('ivr_auth_cancel', %(id)s::text);

-- name: set_channel
UPDATE verifications SET channel_id = %(channel_id)s, updated_at = now()
WHERE id = %(id)s AND status = 'calling';

-- name: tenant_by_id
SELECT * FROM tenants WHERE id = %(id)s;

-- name: inbound_pending
-- The newest request waiting for a call from this number to this DID.
SELECT * FROM verifications
WHERE method = 'inbound' AND status = 'queued' AND phone = %(phone)s AND inbound_number = %(did)s
  AND expires_at > now()
ORDER BY created_at DESC
LIMIT 1;

-- name: tenants_for_did
-- Tenants publishing this number; for a number from the config's shared
-- list, the tenants with no numbers of their own.
SELECT * FROM tenants
WHERE %(did)s = ANY(inbound_numbers) OR (%(shared)s::boolean AND inbound_numbers = '{}')
ORDER BY created_at;

-- name: take_inbound
-- An inbound call that must also key the code: the controller holds a lease
-- on the request while the call lasts, as for outbound calls.
WITH updated AS (
    UPDATE verifications SET
        status = 'in_call', updated_at = now(), answered_at = now(), answered_by = 'human',
        call_attempts = call_attempts + 1, lease_owner = %(owner)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        node = %(node)s, channel_id = %(channel_id)s
    WHERE id = %(id)s AND status = 'queued' AND expires_at > now()
    RETURNING *
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', 'queued', 'in_call', %(detail)s::jsonb FROM updated
)
SELECT * FROM updated;

-- name: update_tenant
UPDATE tenants SET
    caller_id = CASE WHEN %(set_caller_id)s::boolean THEN %(caller_id)s::text ELSE caller_id END,
    default_language = CASE WHEN %(set_default_language)s::boolean THEN %(default_language)s::text
                            ELSE default_language END,
    voice_require_key = coalesce(%(voice_require_key)s::boolean, voice_require_key),
    inbound_numbers = coalesce(%(inbound_numbers)s::text[], inbound_numbers),
    missed_call = coalesce(%(missed_call)s::boolean, missed_call),
    caller_id_pool = coalesce(%(caller_id_pool)s::text[], caller_id_pool)
WHERE name = %(name)s
RETURNING *;

-- name: next_pool_caller_id
-- The tenant's next caller ID from its pool. The row lock of the UPDATE
-- makes each turn atomic across every controller. No row: no pool.
UPDATE tenants SET caller_id_cursor = caller_id_cursor + 1
WHERE id = %(id)s AND cardinality(caller_id_pool) > 0
RETURNING caller_id_pool[1 + (caller_id_cursor - 1) %% cardinality(caller_id_pool)] AS caller_id;

-- name: set_answered_by
UPDATE verifications SET answered_by = %(answered_by)s, updated_at = now() WHERE id = %(id)s;

-- name: enqueue_webhook
INSERT INTO webhook_deliveries (id, verification_id, tenant_id, url, event_type, body)
VALUES (%(id)s, %(verification_id)s, %(tenant_id)s, %(url)s, %(event_type)s, %(body)s);

-- name: claim_webhooks
-- Due deliveries, held out of other senders' reach for one attempt's time;
-- a sender that dies mid-attempt leaves the row due again afterwards.
WITH picked AS (
    SELECT id FROM webhook_deliveries
    WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), held AS (
    UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => %(hold_seconds)s)
    FROM picked WHERE d.id = picked.id
    RETURNING d.*
)
SELECT held.*, t.webhook_secret_sealed FROM held JOIN tenants t ON t.id = held.tenant_id;

-- name: record_webhook_attempt
WITH updated AS (
    UPDATE webhook_deliveries SET
        attempts = attempts + 1,
        last_status_code = %(status_code)s,
        last_error = %(error)s,
        delivered_at = CASE WHEN %(delivered)s::boolean THEN now() ELSE NULL END,
        gave_up_at = CASE WHEN %(give_up)s::boolean THEN now() ELSE NULL END,
        next_attempt_at = coalesce(%(next_attempt_at)s::timestamptz, next_attempt_at)
    WHERE id = %(id)s
    RETURNING id, attempts
)
INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms)
SELECT id, attempts, %(status_code)s, %(error)s, %(duration_ms)s FROM updated;

-- name: webhooks_for
SELECT d.id AS event_id, d.event_type, d.url, d.created_at, d.attempts, d.delivered_at, d.gave_up_at,
       d.next_attempt_at, d.last_status_code, d.last_error,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
               'attempt', a.attempt, 'at', a.at, 'status_code', a.status_code, 'error', a.error,
               'duration_ms', a.duration_ms) ORDER BY a.id)
           FROM webhook_attempts a WHERE a.delivery_id = d.id
       ), '[]'::jsonb) AS attempt_log
FROM webhook_deliveries d
WHERE d.verification_id = %(id)s
ORDER BY d.created_at;

-- name: set_webhook_secret
UPDATE tenants SET webhook_secret_sealed = %(sealed)s WHERE id = %(id)s RETURNING id;

-- name: lock_tenant_creates
-- Serialises one tenant's creates for the rest of the transaction, so that
-- the limits counted next cannot be passed by two requests at once.
SELECT pg_advisory_xact_lock(hashtextextended('ivr-auth-create:' || %(tenant_id)s::text, 0));

-- name: limit_counts
SELECT
    now() AS now,
    (SELECT count(*) FROM verifications
      WHERE tenant_id = %(tenant_id)s AND created_at > now() - interval '60 seconds') AS last_minute,
    (SELECT min(created_at) FROM verifications
      WHERE tenant_id = %(tenant_id)s AND created_at > now() - interval '60 seconds') AS oldest_last_minute,
    -- requests that called the number, or still may: not those ended before
    -- any call (canceled or expired while queued). A call that failed on its
    -- trunk gives its attempt back (call_attempts) but keeps its call_attempts row.
    (SELECT count(*) FROM verifications v
      WHERE tenant_id = %(tenant_id)s AND phone = %(phone)s AND method IN ('dtmf', 'voice')
        AND created_at > now() - make_interval(secs => %(phone_window)s)
        AND (status IN ('queued', 'calling', 'in_call', 'delivered') OR call_attempts > 0
             OR EXISTS (SELECT 1 FROM call_attempts c WHERE c.verification_id = v.id))) AS to_phone,
    (SELECT min(created_at) FROM verifications v
      WHERE tenant_id = %(tenant_id)s AND phone = %(phone)s AND method IN ('dtmf', 'voice')
        AND created_at > now() - make_interval(secs => %(phone_window)s)
        AND (status IN ('queued', 'calling', 'in_call', 'delivered') OR call_attempts > 0
             OR EXISTS (SELECT 1 FROM call_attempts c WHERE c.verification_id = v.id))) AS oldest_to_phone,
    (SELECT max(finished_at) FROM verifications
      WHERE tenant_id = %(tenant_id)s AND phone = %(phone)s AND status = 'failed') AS last_failure,
    -- calls placed today, and those still to come for open requests
    (SELECT count(*) FROM call_attempts c JOIN verifications v ON v.id = c.verification_id
      WHERE v.tenant_id = %(tenant_id)s AND v.method IN ('dtmf', 'voice')
        AND c.started_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
    + (SELECT count(*) FROM verifications
      WHERE tenant_id = %(tenant_id)s AND method IN ('dtmf', 'voice') AND status = 'queued') AS calls_today;

-- name: log_tenant_event
INSERT INTO tenant_events (tenant_id, type, detail) VALUES (%(tenant_id)s, %(type)s, %(detail)s::jsonb);

-- name: tenant_events_for
SELECT id, at, type, detail FROM tenant_events
WHERE tenant_id = %(tenant_id)s OR (%(with_global)s::boolean AND tenant_id IS NULL)
ORDER BY id DESC LIMIT %(limit)s;

-- name: update_tenant_limits
UPDATE tenants SET
    allowed_countries = coalesce(%(allowed_countries)s::text[], allowed_countries),
    allowed_prefixes = coalesce(%(allowed_prefixes)s::text[], allowed_prefixes),
    -- NULL: the config's limits.allowed_line_types
    allowed_line_types = CASE WHEN %(set_allowed_line_types)s::boolean THEN %(allowed_line_types)s::text[]
                              ELSE allowed_line_types END,
    requests_per_minute = CASE WHEN %(set_requests_per_minute)s::boolean THEN %(requests_per_minute)s::int
                               ELSE requests_per_minute END,
    sends_per_phone = CASE WHEN %(set_sends_per_phone)s::boolean THEN %(sends_per_phone)s::int
                           ELSE sends_per_phone END,
    sends_per_phone_window_seconds = CASE WHEN %(set_sends_per_phone_window_seconds)s::boolean
                                          THEN %(sends_per_phone_window_seconds)s::int
                                          ELSE sends_per_phone_window_seconds END,
    daily_call_budget = CASE WHEN %(set_daily_call_budget)s::boolean THEN %(daily_call_budget)s::int
                             ELSE daily_call_budget END,
    failure_cooldown_seconds = CASE WHEN %(set_failure_cooldown_seconds)s::boolean
                                    THEN %(failure_cooldown_seconds)s::int ELSE failure_cooldown_seconds END,
    retention_days = CASE WHEN %(set_retention_days)s::boolean THEN %(retention_days)s::int
                          ELSE retention_days END
WHERE id = %(id)s
RETURNING *;

-- name: api_keys_for
SELECT prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = %(tenant_id)s ORDER BY created_at;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = now()
WHERE tenant_id = %(tenant_id)s AND prefix = %(prefix)s AND revoked_at IS NULL
RETURNING prefix;

-- name: purge_finished
-- Finished requests past their tenant's retention: the number is masked
-- (country code and last two digits, enough for usage by country), the
-- reference, callback URL and sealed code are dropped, and their event log
-- and webhook deliveries deleted. Call attempts stay (no personal data:
-- times, outcomes and causes, which usage reports need).
WITH due AS (
    SELECT v.id FROM verifications v JOIN tenants t ON t.id = v.tenant_id
    WHERE v.purged_at IS NULL AND v.finished_at IS NOT NULL
      AND v.finished_at < now() - make_interval(days => coalesce(t.retention_days, %(default_days)s))
    LIMIT %(limit)s
    FOR UPDATE OF v SKIP LOCKED
), events AS (
    DELETE FROM verification_events e USING due WHERE e.verification_id = due.id
), hooks AS (
    DELETE FROM webhook_deliveries w USING due WHERE w.verification_id = due.id
)
UPDATE verifications v SET
    -- +81 and the last two digits stay (two-digit country codes; others keep a digit more or less)
    phone = CASE WHEN length(v.phone) > 6
                 THEN left(v.phone, 3) || repeat('*', length(v.phone) - 5) || right(v.phone, 2)
                 ELSE repeat('*', length(v.phone)) END,
    reference = NULL, callback_url = NULL, code_sealed = NULL, request_hash = NULL,
    idempotency_key = NULL, inbound_number = NULL, purged_at = now()
FROM due WHERE v.id = due.id
RETURNING v.id, v.tenant_id;

-- name: purge_tenant_events
DELETE FROM tenant_events e USING tenants t
WHERE e.tenant_id = t.id AND e.at < now() - make_interval(days => coalesce(t.retention_days, %(default_days)s));

-- name: prefix_alarms
-- Prefixes with many calls and few verified in the window, that have not
-- raised an alarm in it yet.
WITH calls AS (
    SELECT left(v.phone, %(length)s) AS prefix, v.status
    FROM call_attempts c JOIN verifications v ON v.id = c.verification_id
    WHERE c.started_at > now() - make_interval(secs => %(window)s) AND v.purged_at IS NULL
), grouped AS (
    SELECT prefix, count(*) AS placed, count(*) FILTER (WHERE status = 'verified') AS verified
    FROM calls GROUP BY prefix
)
SELECT g.* FROM grouped g
WHERE g.placed >= %(min_calls)s AND g.verified < %(max_ratio)s * g.placed
  AND NOT EXISTS (
      SELECT 1 FROM tenant_events e
      WHERE e.type = 'prefix_alarm' AND e.detail ->> 'prefix' = g.prefix
        AND e.at > now() - make_interval(secs => %(window)s)
  );

-- name: usage_requests
-- A tenant's requests created in [from, to): one row for the total, one per
-- method and one per line type ("per" says which; the other column is NULL).
SELECT CASE grouping(method, line_type) WHEN 1 THEN 'method' WHEN 2 THEN 'line_type' ELSE 'total' END AS per,
       method, line_type,
       count(*) AS requests,
       count(*) FILTER (WHERE status = 'verified') AS verified
FROM verifications
WHERE tenant_id = %(tenant_id)s AND created_at >= %(from)s AND created_at < %(to)s
GROUP BY GROUPING SETS ((method), (line_type), ());

-- name: usage_calls
-- A tenant's calls started in [from, to), grouped as usage_requests. Talk
-- time runs from answer to hangup; a call still in progress counts up to
-- "to" (or now, if earlier).
SELECT CASE grouping(v.method, v.line_type) WHEN 1 THEN 'method' WHEN 2 THEN 'line_type' ELSE 'total' END AS per,
       v.method, v.line_type,
       count(*) AS placed,
       count(c.answered_at) AS answered,
       round(coalesce(sum(greatest(
           extract(epoch FROM coalesce(c.ended_at, least(%(to)s::timestamptz, now())) - c.answered_at), 0
       )), 0), 1)::float8 AS talk_seconds
FROM call_attempts c JOIN verifications v ON v.id = c.verification_id
WHERE v.tenant_id = %(tenant_id)s AND c.started_at >= %(from)s AND c.started_at < %(to)s
GROUP BY GROUPING SETS ((v.method), (v.line_type), ());

-- name: requeue_unplaced
-- A claimed request whose call could not even be placed (Asterisk down or
-- its app not registered): back to the queue, the attempt not counted.
WITH updated AS (
    UPDATE verifications SET
        status = 'queued', updated_at = now(),
        call_attempts = greatest(call_attempts - 1, 0),
        next_attempt_at = now() + make_interval(secs => %(delay)s),
        lease_owner = NULL, lease_expires_at = NULL
    WHERE id = %(id)s AND status = 'calling'
    RETURNING *
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', 'calling', 'queued', %(detail)s::jsonb FROM updated
), unplaced AS (
    -- no call happened; the next attempt reuses the attempt number (and channel id)
    DELETE FROM call_attempts WHERE channel_id = %(channel_id)s
)
SELECT * FROM updated;

-- name: requeue_failover
-- A call that failed on its trunk (503, time-out): back to the queue, the
-- attempt not counted, at once when the node has another trunk up, else
-- after the delay given, when one will be. The call did happen, so its
-- call_attempts row stays, ended as trunk_failed; trunk_failovers counts
-- such calls (bounding them) and gives the next call a channel id of its own.
WITH updated AS (
    UPDATE verifications SET
        status = 'queued', updated_at = now(),
        call_attempts = greatest(call_attempts - 1, 0),
        trunk_failovers = trunk_failovers + 1,
        next_attempt_at = now() + make_interval(secs => %(delay)s),
        lease_owner = NULL, lease_expires_at = NULL,
        last_cause = %(cause)s, last_cause_txt = %(cause_txt)s
    WHERE id = %(id)s AND status = 'calling'
    RETURNING *
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', 'calling', 'queued', %(detail)s::jsonb FROM updated
), ended AS (
    UPDATE call_attempts SET ended_at = clock_timestamp(), outcome = 'trunk_failed', cause = %(cause)s,
        cause_txt = %(cause_txt)s
    WHERE channel_id = %(channel_id)s AND ended_at IS NULL
)
SELECT * FROM updated;

