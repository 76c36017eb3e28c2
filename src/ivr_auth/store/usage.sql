-- Named queries of a tenant's usage over a period (ivr_auth/store/usage.py).

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
