-- Named queries for the operators' dashboard (ivr_auth/store/dashboard.py):
-- controllers' reports of themselves, and the overview the page shows. The
-- overview runs in one read-only transaction under a statement timeout,
-- with the /metrics scrape's queue query.

-- name: report_controller
INSERT INTO controllers (name, node, ari_connected, calls, trunks, started_at, seen_at)
VALUES (%(name)s, %(node)s, %(ari_connected)s, %(calls)s, %(trunks)s, %(started_at)s, now())
ON CONFLICT (name) DO UPDATE
SET node = EXCLUDED.node, ari_connected = EXCLUDED.ari_connected, calls = EXCLUDED.calls,
    trunks = EXCLUDED.trunks, started_at = EXCLUDED.started_at, seen_at = now();

-- name: forget_controller
DELETE FROM controllers WHERE name = %(name)s;

-- name: cursor
-- What moved since the last look: the page is sent again when this changes.
SELECT (SELECT coalesce(max(id), 0) FROM verification_events) AS event_id,
       (SELECT coalesce(max(id), 0) FROM webhook_attempts) AS webhook_attempt_id;

-- name: changed_requests
SELECT DISTINCT verification_id AS id FROM (
    SELECT verification_id FROM verification_events WHERE id > %(after)s ORDER BY id LIMIT 1000
) e;

-- name: controllers
-- Gone for a day: forgotten by the page (a controller stopped cleanly
-- deletes its own row).
SELECT name, node, ari_connected, calls, trunks, started_at, seen_at,
       extract(epoch FROM now() - seen_at)::float8 AS seen_seconds_ago
FROM controllers
WHERE seen_at > now() - interval '1 day'
ORDER BY node, name;

-- name: trunk_recent
-- Calls that started in the last %(window_s)s seconds, by trunk.
SELECT trunk,
       count(*) AS calls,
       count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
       -- The flows record every call that failed on its trunk's side (a 503,
       -- a time-out with no answer at all, refused credentials) as trunk_failed.
       count(*) FILTER (WHERE outcome = 'trunk_failed') AS trunk_failures
FROM call_attempts
WHERE started_at > now() - make_interval(secs => %(window_s)s)
GROUP BY trunk;

-- name: live_calls
SELECT v.id, v.method, v.status, v.phone, v.purged_at, t.name AS tenant, c.node, c.trunk, c.attempt,
       c.started_at, c.answered_at,
       extract(epoch FROM clock_timestamp() - c.started_at)::float8 AS seconds
FROM call_attempts c
JOIN verifications v ON v.id = c.verification_id
JOIN tenants t ON t.id = v.tenant_id
WHERE c.ended_at IS NULL AND v.status IN ('calling', 'in_call')
ORDER BY c.started_at
LIMIT 200;

-- name: recent
SELECT v.id, v.method, v.status, v.reason, v.phone, v.purged_at, t.name AS tenant, v.created_at, v.answered_at,
       v.finished_at, v.last_cause, v.last_cause_txt, v.call_attempts, v.code_attempts,
       (SELECT min(c.started_at) FROM call_attempts c WHERE c.verification_id = v.id) AS first_call_at,
       -- the latest event's delivery: the result's, once there is one
       (SELECT w.delivered_at FROM webhook_deliveries w WHERE w.verification_id = v.id
        ORDER BY w.created_at DESC LIMIT 1) AS webhook_at
FROM verifications v
JOIN tenants t ON t.id = v.tenant_id
ORDER BY v.created_at DESC
LIMIT %(limit)s;

-- name: tenant_day
SELECT t.name AS tenant, v.status, count(*) AS n
FROM verifications v JOIN tenants t ON t.id = v.tenant_id
WHERE v.created_at >= %(since)s
GROUP BY t.name, v.status;

-- name: request
SELECT v.id, v.method, v.status, v.reason, v.phone, v.purged_at, v.line_type, v.language, v.reference,
       v.answered_by, v.inbound_number, v.code_attempts, v.max_code_attempts, v.call_attempts,
       v.max_call_attempts, v.created_at, v.updated_at, v.expires_at, v.answered_at, v.finished_at,
       v.last_cause, v.last_cause_txt, v.node, v.channels, v.channel_index, v.next_channel_at, v.sent_at,
       v.delivered_at, t.name AS tenant
FROM verifications v JOIN tenants t ON t.id = v.tenant_id
WHERE v.id = %(id)s;
