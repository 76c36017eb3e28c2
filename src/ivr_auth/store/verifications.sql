-- Named queries of the verification requests (ivr_auth/store/verifications.py):
-- created by the API, claimed and settled by the controllers, checked by the
-- API and FastAGI. Parameters are %(name)s (a literal percent is %%).

-- name: insert_verification
-- One statement, in autocommit: the limits checked against the tenant's
-- counters (limit_check, when %(checked)s), the row inserted when none is
-- over, its first event, and the dialers woken. Returns one row: the
-- request (id NULL when refused, or when the tenant already used this
-- Idempotency-Key) and the limit it is over, if any (refused_*). The
-- counters row stays locked only until this statement commits.
WITH refusal AS MATERIALIZED (
    SELECT * FROM limit_check(
        %(tenant_id)s, %(phone)s, %(calls)s, %(requests_per_minute)s, %(sends_per_phone)s,
        %(phone_window)s, %(failure_cooldown)s, %(daily_call_budget)s, %(texts)s, %(daily_sms_budget)s)
    WHERE %(checked)s::boolean
), inserted AS (
    INSERT INTO verifications (
        id, tenant_id, method, phone, line_type, code_hash, code_sealed, code_length, language,
        reference, callback_url, status, max_code_attempts, max_call_attempts,
        idempotency_key, request_hash, expires_at, inbound_number, ask_code, channels, next_channel_at
    )
    SELECT
        %(id)s, %(tenant_id)s, %(method)s, %(phone)s, %(line_type)s, %(code_hash)s, %(code_sealed)s,
        %(code_length)s, %(language)s, %(reference)s, %(callback_url)s, 'queued', %(max_code_attempts)s,
        %(max_call_attempts)s, %(idempotency_key)s, %(request_hash)s,
        now() + make_interval(secs => %(ttl_seconds)s), %(inbound_number)s, %(ask_code)s, %(channels)s::jsonb,
        now() + make_interval(secs => (%(channels)s::jsonb -> 1 ->> 'after_seconds')::float8)
    WHERE NOT EXISTS (SELECT 1 FROM refusal WHERE reason IS NOT NULL)
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING *
), event AS (
    INSERT INTO verification_events (verification_id, type, to_status, detail)
    SELECT id, 'status', status, jsonb_build_object('method', method, 'ttl_seconds', %(ttl_seconds)s::int)
    FROM inserted
    UNION ALL
    SELECT id, 'channel', NULL, jsonb_build_object('channel', method, 'channel_index', 0)
    FROM inserted WHERE channels IS NOT NULL
), sms AS (
    INSERT INTO sms_messages (verification_id, tenant_id, channel_index)
    SELECT id, tenant_id, 0 FROM inserted WHERE method = 'sms'
    RETURNING id
)
SELECT i.*, r.reason AS refused_reason, r.retry_after AS refused_retry_after, r.n AS refused_count,
    CASE WHEN i.id IS NOT NULL AND i.method <> 'sms' THEN pg_notify('ivr_auth_queue', '') END AS notified,
    CASE WHEN i.id IS NOT NULL AND i.method = 'sms' THEN pg_notify('ivr_auth_sms', '') END AS sms_notified
FROM (VALUES (1)) one (x)
LEFT JOIN refusal r ON true
LEFT JOIN inserted i ON true;

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
-- (canceled, expired or settled by someone else meanwhile). In the same
-- statement, when asked: the call answered (answer_channel) or ended
-- (end_channel: whether or not the request moved), a terminal status's
-- webhook row (its body rendered by the sender), and the NOTIFYs.
-- A request with a next channel (channels) that would end here with its
-- channel failed (to_status one of fall_statuses) moves on to that channel
-- instead, while it has time left: queued on it (and an SMS written for
-- the sender), its wait for the channel after it started; `fell` says so.
WITH old AS (
    SELECT id, status, method, channel_index,
        coalesce(%(to_status)s::text = ANY(%(fall_statuses)s::text[])
            AND channel_index + 1 < jsonb_array_length(channels) AND expires_at > now(), false) AS fell,
        channels -> (channel_index + 1) AS step,
        channels -> (channel_index + 2) AS after_step
    FROM verifications
    WHERE id = %(id)s AND status = ANY(%(from_statuses)s::text[])
      AND (%(channel_index)s::int IS NULL OR channel_index = %(channel_index)s::int)
    FOR UPDATE
), updated AS (
    UPDATE verifications v SET
        status = CASE WHEN old.fell THEN 'queued' ELSE %(to_status)s::text END,
        updated_at = now(),
        answered_at = CASE WHEN %(to_status)s::text = 'in_call' THEN now() ELSE v.answered_at END,
        delivered_at = CASE WHEN %(to_status)s::text = 'delivered' THEN now() ELSE v.delivered_at END,
        sent_at = CASE WHEN %(to_status)s::text = 'sent' THEN now() ELSE v.sent_at END,
        answered_by = coalesce(%(answered_by)s::text, v.answered_by),
        -- a call that failed on its trunk gives its attempt back
        call_attempts = CASE WHEN %(uncounted)s::boolean THEN greatest(v.call_attempts - 1, 0)
                             ELSE v.call_attempts END,
        finished_at = CASE WHEN %(terminal)s::boolean AND NOT old.fell THEN now() ELSE v.finished_at END,
        code_sealed = CASE WHEN %(terminal)s::boolean AND NOT old.fell THEN NULL ELSE v.code_sealed END,
        next_attempt_at = CASE WHEN old.fell THEN now()
                               ELSE coalesce(%(next_attempt_at)s::timestamptz, v.next_attempt_at) END,
        lease_owner = CASE WHEN %(release)s::boolean THEN NULL ELSE v.lease_owner END,
        lease_expires_at = CASE WHEN %(release)s::boolean THEN NULL ELSE v.lease_expires_at END,
        channel_id = coalesce(%(channel_id)s::text, v.channel_id),
        reason = CASE WHEN old.fell THEN NULL ELSE coalesce(%(reason)s::text, v.reason) END,
        last_cause = coalesce(%(cause)s::int, v.last_cause),
        last_cause_txt = coalesce(%(cause_txt)s::text, v.last_cause_txt),
        method = CASE WHEN old.fell THEN old.step ->> 'channel' ELSE v.method END,
        channel_index = v.channel_index + CASE WHEN old.fell THEN 1 ELSE 0 END,
        max_call_attempts = CASE WHEN old.fell AND old.step ? 'max_call_attempts'
                                 THEN v.call_attempts + (old.step ->> 'max_call_attempts')::int
                                 ELSE v.max_call_attempts END,
        next_channel_at = CASE
            WHEN old.fell THEN now() + make_interval(secs => (old.after_step ->> 'after_seconds')::float8)
            WHEN %(terminal)s::boolean THEN NULL
            ELSE v.next_channel_at END
    FROM old WHERE v.id = old.id
    RETURNING v.*, old.status AS old_status, old.method AS old_method, old.fell
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', old_status, status,
        CASE WHEN fell THEN %(detail)s::jsonb || jsonb_build_object(
                 'channel_failed', %(to_status)s::text, 'from_channel', old_method)
             ELSE %(detail)s::jsonb END
    FROM updated
    UNION ALL
    SELECT id, 'channel', NULL, NULL, jsonb_build_object(
        'channel', method, 'channel_index', channel_index, 'after', 'failed', 'from_channel', old_method,
        'outcome', %(to_status)s::text)
    FROM updated WHERE fell
), sms AS (
    INSERT INTO sms_messages (verification_id, tenant_id, channel_index)
    SELECT id, tenant_id, channel_index FROM updated WHERE fell AND method = 'sms'
    RETURNING id
), answered AS (
    UPDATE call_attempts SET answered_at = clock_timestamp()
    WHERE %(answer_channel)s::text IS NOT NULL AND channel_id = %(answer_channel)s::text
), ended AS (
    UPDATE call_attempts SET ended_at = clock_timestamp(), outcome = %(end_outcome)s::text,
        cause = %(end_cause)s::int, cause_txt = %(end_cause_txt)s::text
    WHERE %(end_channel)s::text IS NOT NULL AND channel_id = %(end_channel)s::text AND ended_at IS NULL
), hook AS (
    -- Held (hold_seconds, not NULL) for the process that made the change,
    -- which sends it at once; else due now, for any sender (NOTIFY).
    INSERT INTO webhook_deliveries (id, verification_id, tenant_id, url, event_type, body, next_attempt_at)
    SELECT gen_random_uuid(), id, tenant_id, callback_url, 'verification.' || status, NULL,
        now() + make_interval(secs => coalesce(%(hold_seconds)s::float8, 0))
    FROM updated
    WHERE %(webhook)s::boolean AND NOT fell AND callback_url IS NOT NULL
    RETURNING id, created_at, event_type, url
)
SELECT u.*,
    h.id AS webhook_id, h.created_at AS webhook_created_at, h.event_type AS webhook_event_type,
    h.url AS webhook_url,
    CASE WHEN h.id IS NOT NULL AND %(hold_seconds)s::float8 IS NOT NULL
         THEN (SELECT t.webhook_secret_sealed FROM tenants t WHERE t.id = u.tenant_id) END AS webhook_secret_sealed,
    CASE WHEN h.id IS NOT NULL AND %(hold_seconds)s::float8 IS NULL
         THEN pg_notify('ivr_auth_webhooks', '') END AS webhook_notified,
    CASE WHEN %(notify_queue)s::boolean OR (u.fell AND u.method <> 'sms') THEN pg_notify('ivr_auth_queue', '') END
        AS queue_notified,
    CASE WHEN u.fell AND u.method = 'sms' THEN pg_notify('ivr_auth_sms', '') END AS sms_notified,
    CASE WHEN %(notify_cancel)s::boolean THEN pg_notify('ivr_auth_cancel', u.id::text) END AS cancel_notified
FROM updated u
LEFT JOIN hook h ON true;

-- name: claim
-- Takes the due requests the trunks offered can take now, each with its
-- trunk (claim_paced, migration 13: the trunks' shared tokens and calls in
-- progress), then lists those due that had to wait (status still queued).
-- SKIP LOCKED lets several controllers claim from one queue without
-- waiting on each other.
SELECT * FROM claim_paced(
    %(owner)s, %(node)s, %(lease_seconds)s, %(trunks)s::text[], %(ranks)s::int[], %(rooms)s::int[],
    %(rates)s::float8[], %(bursts)s::float8[], %(max_channels)s::int[]);

-- name: heartbeat
UPDATE verifications SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = ANY(%(ids)s::uuid[]) AND lease_owner = %(owner)s AND status IN ('calling', 'in_call');

-- name: expire_queued
-- Requests nobody is calling whose time ran out: still queued (or, for
-- inbound, still waiting for the call), or sent / read out and never checked. At
-- most %(limit)s at a time: each fires the counters' row triggers.
WITH old AS (
    SELECT id, status FROM verifications
    WHERE status IN ('queued', 'sent', 'delivered') AND expires_at <= now()
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE verifications v SET status = 'expired', reason = 'expired', updated_at = now(), finished_at = now(),
        code_sealed = NULL, next_channel_at = NULL
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

-- name: set_answered_by
UPDATE verifications SET answered_by = %(answered_by)s, updated_at = now() WHERE id = %(id)s;

-- name: inbound_pending
-- The newest request waiting for a call from this number to this DID.
SELECT * FROM verifications
WHERE method = 'inbound' AND status = 'queued' AND phone = %(phone)s AND inbound_number = %(did)s
  AND expires_at > now()
ORDER BY created_at DESC
LIMIT 1;

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
SELECT *, pg_notify('ivr_auth_queue', '') AS notified FROM updated;

-- name: advance_channels
-- Requests whose next channel's time came while they wait (queued, their
-- SMS sent or code read out, and unverified): moved on to that channel, at
-- most %(limit)s at a time; the channel they leave stops (an SMS not yet
-- sent is not sent). A request in a call finishes the call first.
WITH old AS (
    SELECT id, status, method, channel_index,
        channels -> (channel_index + 1) AS step, channels -> (channel_index + 2) AS after_step
    FROM verifications
    WHERE next_channel_at <= now() AND status IN ('queued', 'sent', 'delivered') AND expires_at > now()
      AND channel_index + 1 < jsonb_array_length(channels)
    ORDER BY next_channel_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE verifications v SET
        status = 'queued', updated_at = now(), reason = NULL, next_attempt_at = now(),
        method = old.step ->> 'channel', channel_index = v.channel_index + 1,
        max_call_attempts = CASE WHEN old.step ? 'max_call_attempts'
                                 THEN v.call_attempts + (old.step ->> 'max_call_attempts')::int
                                 ELSE v.max_call_attempts END,
        next_channel_at = now() + make_interval(secs => (old.after_step ->> 'after_seconds')::float8)
    FROM old WHERE v.id = old.id
    RETURNING v.*, old.status AS old_status, old.method AS old_method
), event AS (
    INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
    SELECT id, 'status', old_status, status, jsonb_build_object('reason', 'next_channel', 'channel', method)
    FROM updated WHERE old_status <> 'queued'
    UNION ALL
    SELECT id, 'channel', NULL, NULL, jsonb_build_object(
        'channel', method, 'channel_index', channel_index, 'after', 'time', 'from_channel', old_method,
        'from_status', old_status)
    FROM updated
), left_sms AS (
    UPDATE sms_messages m SET status = 'canceled', outcome = 'canceled', finished_at = now(),
        lease_owner = NULL, lease_expires_at = NULL
    FROM updated u
    WHERE m.verification_id = u.id AND m.status = 'queued' AND m.channel_index < u.channel_index
), sms AS (
    INSERT INTO sms_messages (verification_id, tenant_id, channel_index)
    SELECT id, tenant_id, channel_index FROM updated WHERE method = 'sms'
)
SELECT u.*,
    CASE WHEN u.method <> 'sms' THEN pg_notify('ivr_auth_queue', '') END AS queue_notified,
    CASE WHEN u.method = 'sms' THEN pg_notify('ivr_auth_sms', '') END AS sms_notified
FROM updated u;
