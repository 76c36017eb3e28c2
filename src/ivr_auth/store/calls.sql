-- Named queries of the calls placed and taken, one call_attempts row each
-- (ivr_auth/store/calls.py).

-- name: start_call_attempt
-- The call's row (with the channel it serves: the request's method now),
-- the request's channel id (while it is being called), and the tenant the
-- call is placed for, in one statement.
WITH attempt AS (
    INSERT INTO call_attempts (verification_id, attempt, controller, node, trunk, channel_id, method)
    SELECT %(id)s, %(attempt)s, %(controller)s, %(node)s, %(trunk)s, %(channel_id)s, v.method
    FROM verifications v WHERE v.id = %(id)s
), channel AS (
    UPDATE verifications SET channel_id = %(channel_id)s, updated_at = now()
    WHERE id = %(id)s AND status = 'calling'
)
SELECT t.* FROM tenants t WHERE t.id = %(tenant_id)s;

-- name: answer_call_attempt
UPDATE call_attempts SET answered_at = clock_timestamp() WHERE channel_id = %(channel_id)s;

-- name: end_call_attempt
UPDATE call_attempts SET ended_at = clock_timestamp(), outcome = %(outcome)s, cause = %(cause)s,
    cause_txt = %(cause_txt)s
WHERE channel_id = %(channel_id)s AND ended_at IS NULL;

-- name: calls_for
SELECT attempt, node, trunk, channel_id, started_at, answered_at, ended_at, outcome, cause, cause_txt
FROM call_attempts WHERE verification_id = %(id)s ORDER BY attempt, id;
