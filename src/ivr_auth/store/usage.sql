-- Named queries of a tenant's usage over a period (ivr_auth/store/usage.py).

-- name: usage_requests
-- A tenant's requests created in [from, to): one row for the total, one per
-- method and one per line type ("per" says which; the other column is NULL).
-- A request's method is the one asked for: the first of its channels.
SELECT CASE grouping(asked, line_type) WHEN 1 THEN 'method' WHEN 2 THEN 'line_type' ELSE 'total' END AS per,
       asked AS method, line_type,
       count(*) AS requests,
       count(*) FILTER (WHERE status = 'verified') AS verified
FROM (
    SELECT coalesce(channels -> 0 ->> 'channel', method) AS asked, line_type, status
    FROM verifications
    WHERE tenant_id = %(tenant_id)s AND created_at >= %(from)s AND created_at < %(to)s
) r
GROUP BY GROUPING SETS ((asked), (line_type), ());

-- name: usage_calls
-- A tenant's calls started in [from, to), grouped as usage_requests. Talk
-- time runs from answer to hangup; a call still in progress counts up to
-- "to" (or now, if earlier). A call counts under the channel it served.
SELECT CASE grouping(coalesce(c.method, v.method), v.line_type)
           WHEN 1 THEN 'method' WHEN 2 THEN 'line_type' ELSE 'total' END AS per,
       coalesce(c.method, v.method) AS method, v.line_type,
       count(*) AS placed,
       count(c.answered_at) AS answered,
       round(coalesce(sum(greatest(
           extract(epoch FROM coalesce(c.ended_at, least(%(to)s::timestamptz, now())) - c.answered_at), 0
       )), 0), 1)::float8 AS talk_seconds
FROM call_attempts c JOIN verifications v ON v.id = c.verification_id
WHERE v.tenant_id = %(tenant_id)s AND c.started_at >= %(from)s AND c.started_at < %(to)s
GROUP BY GROUPING SETS ((coalesce(c.method, v.method)), (v.line_type), ());

-- name: usage_sms
-- A tenant's SMS created in [from, to) that a carrier took (submitted), by
-- encoding and outcome (NULL: no final receipt yet): messages and parts,
-- what carriers bill.
SELECT coalesce(encoding, 'none') AS encoding, coalesce(outcome, 'pending') AS outcome,
       count(*) AS messages, coalesce(sum(parts), 0)::bigint AS parts
FROM sms_messages
WHERE tenant_id = %(tenant_id)s AND created_at >= %(from)s AND created_at < %(to)s AND submitted_at IS NOT NULL
GROUP BY 1, 2;
