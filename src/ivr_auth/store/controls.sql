-- Named queries of the operator's controls over tenants (ivr_auth/store/controls.py):
-- limits, API keys, the operator's event log, retention purges and prefix alarms.

-- name: update_tenant_limits
-- NOTIFY: the API's key cache keeps the tenant's limits (tenants.TENANTS_CHANNEL).
WITH updated AS (
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
                          ELSE retention_days END,
    daily_sms_budget = CASE WHEN %(set_daily_sms_budget)s::boolean THEN %(daily_sms_budget)s::int
                            ELSE daily_sms_budget END
WHERE id = %(id)s
RETURNING *
)
SELECT updated.* FROM updated, pg_notify('ivr_auth_tenants', updated.id::text);

-- name: api_keys_for
SELECT prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = %(tenant_id)s ORDER BY created_at;

-- name: revoke_api_key
-- NOTIFY: the API's key cache may hold the key (tenants.TENANTS_CHANNEL).
WITH revoked AS (
    UPDATE api_keys SET revoked_at = now()
    WHERE tenant_id = %(tenant_id)s AND prefix = %(prefix)s AND revoked_at IS NULL
    RETURNING prefix, tenant_id
)
SELECT revoked.prefix FROM revoked, pg_notify('ivr_auth_tenants', revoked.tenant_id::text);

-- name: log_tenant_event
INSERT INTO tenant_events (tenant_id, type, detail) VALUES (%(tenant_id)s, %(type)s, %(detail)s::jsonb);

-- name: tenant_events_for
SELECT id, at, type, detail FROM tenant_events
WHERE tenant_id = %(tenant_id)s OR (%(with_global)s::boolean AND tenant_id IS NULL)
ORDER BY id DESC LIMIT %(limit)s;

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
