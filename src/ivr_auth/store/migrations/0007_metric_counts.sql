-- ivr-auth schema, version 7: running totals for /metrics.
--
-- A scrape used to count whole tables (every request, call attempt and
-- webhook kept for the retention period), which grows without bound. These
-- totals are kept by triggers in the transaction that makes each change, so
-- a scrape reads a few dozen rows, and they are right whichever process made
-- the change. Each statement adds its count to one of 16 rows of each label
-- set it touched, picked at random, so that concurrent transactions seldom
-- wait on one another.
CREATE TABLE metric_counts (
    name text NOT NULL,
    labels text[] NOT NULL,
    shard smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (name, labels, shard)
);

-- A Q.850 cause as a label: 0-127, else 'none'.
CREATE FUNCTION metric_cause(p_cause int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_cause BETWEEN 0 AND 127 THEN p_cause::text ELSE 'none' END
$$;

-- Adds n to one of the label set's 16 rows, picked at random.
CREATE FUNCTION metric_add(p_name text, p_labels text[], p_n bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO metric_counts (name, labels, shard, n)
    VALUES (p_name, p_labels, floor(random() * 16)::smallint, p_n)
    ON CONFLICT (name, labels, shard) DO UPDATE SET n = metric_counts.n + EXCLUDED.n
$$;

-- The triggers are per statement, over its transition tables: a statement
-- that changes many rows (queued requests expiring together) adds to each
-- label set once, instead of updating the same counter row once per row.

-- Requests: created (by method), and every status a request enters.
CREATE FUNCTION count_verifications_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_add('requests_created', ARRAY[method], count(*)) FROM new_rows GROUP BY method;
    PERFORM metric_add('request_transitions', ARRAY[method, status], count(*)) FROM new_rows GROUP BY method, status;
    RETURN NULL;
END
$$;

CREATE TRIGGER verifications_created_counts AFTER INSERT ON verifications
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_verifications_inserted();

CREATE FUNCTION count_verifications_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_add('request_transitions', ARRAY[n.method, n.status], count(*))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status
    GROUP BY n.method, n.status;
    RETURN NULL;
END
$$;

CREATE TRIGGER verifications_status_counts AFTER UPDATE ON verifications
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_verifications_updated();

-- Call attempts: each one once, when it ends, by outcome and cause.
CREATE FUNCTION count_call_attempts_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM metric_add('dial_outcomes', ARRAY[coalesce(outcome, 'unknown'), metric_cause(cause)], count(*))
        FROM new_rows WHERE ended_at IS NOT NULL
        GROUP BY coalesce(outcome, 'unknown'), metric_cause(cause);
    ELSE
        PERFORM metric_add('dial_outcomes', ARRAY[coalesce(n.outcome, 'unknown'), metric_cause(n.cause)], count(*))
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.ended_at IS NOT NULL AND o.ended_at IS NULL
        GROUP BY coalesce(n.outcome, 'unknown'), metric_cause(n.cause);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER call_attempts_created_counts AFTER INSERT ON call_attempts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_call_attempts_ended();

CREATE TRIGGER call_attempts_ended_counts AFTER UPDATE ON call_attempts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_call_attempts_ended();

-- Webhooks: each delivery once, when delivered or given up (attempts are
-- counted by the controllers that make them).
CREATE FUNCTION count_webhook_deliveries_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_add('webhooks', ARRAY[result], count(*))
    FROM (
        SELECT CASE WHEN n.delivered_at IS NOT NULL AND o.delivered_at IS NULL THEN 'delivered'
                    WHEN n.gave_up_at IS NOT NULL AND o.gave_up_at IS NULL THEN 'given_up' END AS result
        FROM new_rows n JOIN old_rows o ON o.id = n.id
    ) ended
    WHERE result IS NOT NULL
    GROUP BY result;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_deliveries_ended_counts AFTER UPDATE ON webhook_deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_webhook_deliveries_ended();

-- The history so far, from the event log and the tables, so that the totals
-- start where the data is (shard 0).
INSERT INTO metric_counts (name, labels, shard, n)
SELECT 'requests_created', ARRAY[method], 0, count(*) FROM verifications GROUP BY method;
INSERT INTO metric_counts (name, labels, shard, n)
SELECT 'request_transitions', ARRAY[v.method, e.to_status], 0, count(*)
FROM verification_events e JOIN verifications v ON v.id = e.verification_id
WHERE e.type = 'status' AND e.to_status IS NOT NULL
GROUP BY v.method, e.to_status;
INSERT INTO metric_counts (name, labels, shard, n)
SELECT 'dial_outcomes', ARRAY[coalesce(outcome, 'unknown'), metric_cause(cause)], 0, count(*)
FROM call_attempts WHERE ended_at IS NOT NULL
GROUP BY 2;
INSERT INTO metric_counts (name, labels, shard, n)
SELECT 'webhooks', ARRAY[state], 0, n FROM (
    SELECT 'delivered' AS state, count(*) AS n FROM webhook_deliveries WHERE delivered_at IS NOT NULL
    UNION ALL
    SELECT 'given_up', count(*) FROM webhook_deliveries WHERE gave_up_at IS NOT NULL
) s WHERE n > 0;
