-- Named queries for the /metrics scrape, loaded once by ivr_auth/store/gauges.py.
-- They run in one read-only transaction under a statement timeout; every
-- label value they return is drawn from a bounded set (a CHECK constraint,
-- the code's own outcomes, Q.850 causes, the operator's node and trunk names).

-- name: statement_timeout
SELECT set_config('statement_timeout', %(timeout_ms)s, true);

-- name: requests
-- Rows in the table, not events: retention anonymises rows but keeps them,
-- deleting a tenant deletes its requests (so these are gauges, not counters).
SELECT method, status, count(*) AS n FROM verifications GROUP BY method, status;

-- name: queue
-- What the controllers will dial (inbound requests wait for the user's call).
SELECT count(*) AS depth,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds
FROM verifications
WHERE status = 'queued' AND method IN ('dtmf', 'voice');

-- name: calls_in_progress
-- An attempt whose request has moved on was ended by recovery, not by its
-- channel: only count those whose request is still on the phone.
SELECT c.node, c.trunk, count(*) AS n
FROM call_attempts c JOIN verifications v ON v.id = c.verification_id
WHERE c.ended_at IS NULL AND v.status IN ('calling', 'in_call')
GROUP BY c.node, c.trunk;

-- name: dial_outcomes
SELECT coalesce(outcome, 'unknown') AS outcome,
       CASE WHEN cause BETWEEN 0 AND 127 THEN cause::text ELSE 'none' END AS cause,
       count(*) AS n
FROM call_attempts
WHERE ended_at IS NOT NULL
GROUP BY 1, 2;

-- name: webhooks
SELECT count(*) FILTER (WHERE delivered_at IS NULL AND gave_up_at IS NULL) AS pending,
       count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
       count(*) FILTER (WHERE gave_up_at IS NOT NULL) AS given_up,
       coalesce(sum(attempts), 0)::bigint AS attempts
FROM webhook_deliveries;
