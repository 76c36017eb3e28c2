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

-- name: tenant_by_id
SELECT * FROM tenants WHERE id = %(id)s;

-- name: tenants_for_did
-- Tenants publishing this number; for a number from the config's shared
-- list, the tenants with no numbers of their own.
SELECT * FROM tenants
WHERE %(did)s = ANY(inbound_numbers) OR (%(shared)s::boolean AND inbound_numbers = '{}')
ORDER BY created_at;

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
