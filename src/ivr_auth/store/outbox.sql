-- Named queries of the webhook outbox (ivr_auth/store/outbox.py): one delivery
-- row per reported change, written in the change's transaction, claimed by
-- the senders with SKIP LOCKED, each attempt logged.

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

-- name: release_webhook
-- A webhook held for its maker that it could not send now: due at once,
-- for any sender.
WITH released AS (
    UPDATE webhook_deliveries SET next_attempt_at = now()
    WHERE id = %(id)s AND attempts = 0 AND delivered_at IS NULL AND gave_up_at IS NULL
    RETURNING id
)
SELECT pg_notify('ivr_auth_webhooks', '') FROM released;

-- name: requests_to_render
-- The requests whose webhooks were written without their body (a terminal
-- status's, by the statement that settled it): the sender renders them.
SELECT * FROM verifications WHERE id = ANY(%(ids)s::uuid[]);

-- name: record_webhook_attempt
WITH updated AS (
    UPDATE webhook_deliveries SET
        attempts = attempts + 1,
        last_status_code = %(status_code)s,
        last_error = %(error)s,
        -- the body rendered by its first sender stays, for every attempt
        body = coalesce(body, %(body)s::text),
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
