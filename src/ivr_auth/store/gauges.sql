-- Named queries for the /metrics scrape, loaded once by ivr_auth/store/gauges.py.
-- They run in one read-only transaction under a statement timeout; every
-- label value they return is drawn from a bounded set (a CHECK constraint,
-- the code's own outcomes, Q.850 causes, the operator's node and trunk names).
-- None of them counts a whole table: the gauges read what is in progress
-- (each through a partial index), the totals come from metric_counts, kept
-- by triggers (migration 0007).

-- name: requests_in_progress
-- One branch per partial index: queued; calling and in_call; sent; delivered.
SELECT method, status, count(*) AS n FROM verifications WHERE status = 'queued' GROUP BY method, status
UNION ALL
SELECT method, status, count(*) FROM verifications WHERE status IN ('calling', 'in_call') GROUP BY method, status
UNION ALL
SELECT method, status, count(*) FROM verifications WHERE status = 'sent' GROUP BY method, status
UNION ALL
SELECT method, status, count(*) FROM verifications WHERE status = 'delivered' GROUP BY method, status;

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

-- name: totals
SELECT name, labels, sum(n)::bigint AS n FROM metric_counts GROUP BY name, labels;

-- name: webhooks_pending
SELECT count(*) AS n FROM webhook_deliveries WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- name: sms_pending
-- SMS waiting to go out (due or not) or being submitted: one branch per
-- partial index.
SELECT (SELECT count(*) FROM sms_messages WHERE status = 'queued')
     + (SELECT count(*) FROM sms_messages WHERE status = 'sending') AS n;
