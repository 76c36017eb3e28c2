-- Named queries, loaded once by ivr_auth/store/sql.py. Each block starts
-- with "-- name: NAME"; parameters are %(name)s (a literal percent is %%).

-- name: ping
SELECT 1;

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
FROM call_attempts WHERE verification_id = %(id)s ORDER BY attempt;

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
    missed_call = coalesce(%(missed_call)s::boolean, missed_call)
WHERE name = %(name)s
RETURNING *;

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
