-- ivr-auth schema, version 10: limits checked against counters, not counts.
--
-- A create used to count, under a per-tenant advisory lock held for the
-- rest of its transaction, the tenant's requests of the last minute and
-- every call it placed today: the cost of a create grew with the day's
-- volume, and a tenant's creates queued behind each other. Now one row per
-- tenant holds what the limits need, kept by row triggers in the statement
-- that makes each change, and limit_check reads that row (locking it only
-- for the one statement that checks and inserts).

CREATE TABLE tenant_counters (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- The creates of the last minute, one slot a second (a ring of 60):
    -- slot i counts minute_counts[i] creates in the second since the epoch
    -- minute_seconds[i]; a slot whose second is over a minute old is stale.
    minute_seconds bigint[] NOT NULL DEFAULT array_fill(0::bigint, ARRAY[60]),
    minute_counts int[] NOT NULL DEFAULT array_fill(0, ARRAY[60]),
    -- Calls placed (call_attempts rows of dtmf and voice requests) on the UTC
    -- day `day`; read as 0 on any other day.
    day date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
    day_calls int NOT NULL DEFAULT 0,
    -- dtmf and voice requests queued: a call each still to come.
    queued_calls int NOT NULL DEFAULT 0
);

-- The slot of the second since the epoch `sec` in the ring.
CREATE FUNCTION minute_slot(sec bigint) RETURNS int
LANGUAGE sql IMMUTABLE AS $$ SELECT (sec % 60)::int + 1 $$;

CREATE FUNCTION utc_today() RETURNS date
LANGUAGE sql STABLE AS $$ SELECT (now() AT TIME ZONE 'UTC')::date $$;

-- Requests: created (the minute's ring, a queued call; and the metric
-- totals), and their status changes (the queued calls; the metric totals).
-- Row triggers that fire only where there is something to count: a
-- heartbeat or a channel id set fires nothing.
CREATE FUNCTION verifications_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sec bigint := floor(extract(epoch FROM now()))::bigint;
    slot int := minute_slot(sec);
    calling int := CASE WHEN NEW.method IN ('dtmf', 'voice') AND NEW.status = 'queued' THEN 1 ELSE 0 END;
BEGIN
    FOR i IN 1..2 LOOP
        UPDATE tenant_counters c SET
            minute_seconds[slot] = sec,
            minute_counts[slot] = CASE WHEN c.minute_seconds[slot] = sec THEN c.minute_counts[slot] + 1 ELSE 1 END,
            queued_calls = c.queued_calls + calling
        WHERE c.tenant_id = NEW.tenant_id;
        EXIT WHEN FOUND;
        INSERT INTO tenant_counters (tenant_id) VALUES (NEW.tenant_id) ON CONFLICT DO NOTHING;
    END LOOP;
    PERFORM metric_add('requests_created', ARRAY[NEW.method], 1);
    PERFORM metric_add('request_transitions', ARRAY[NEW.method, NEW.status], 1);
    RETURN NULL;
END
$$;

CREATE FUNCTION verifications_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.method IN ('dtmf', 'voice') AND (OLD.status = 'queued') <> (NEW.status = 'queued') THEN
        UPDATE tenant_counters SET
            queued_calls = greatest(queued_calls + CASE WHEN NEW.status = 'queued' THEN 1 ELSE -1 END, 0)
        WHERE tenant_id = NEW.tenant_id;
    END IF;
    PERFORM metric_add('request_transitions', ARRAY[NEW.method, NEW.status], 1);
    RETURN NULL;
END
$$;

CREATE FUNCTION verifications_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenant_counters SET queued_calls = greatest(queued_calls - 1, 0) WHERE tenant_id = OLD.tenant_id;
    RETURN NULL;
END
$$;

DROP TRIGGER verifications_created_counts ON verifications;
DROP TRIGGER verifications_status_counts ON verifications;
DROP FUNCTION count_verifications_inserted();
DROP FUNCTION count_verifications_updated();

CREATE TRIGGER verifications_inserted AFTER INSERT ON verifications
    FOR EACH ROW EXECUTE FUNCTION verifications_inserted();
CREATE TRIGGER verifications_status_changed AFTER UPDATE OF status ON verifications
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION verifications_status_changed();
CREATE TRIGGER verifications_deleted AFTER DELETE ON verifications
    FOR EACH ROW WHEN (OLD.status = 'queued' AND OLD.method IN ('dtmf', 'voice'))
    EXECUTE FUNCTION verifications_deleted();

-- Calls: each call of a dtmf or voice request counts on the day it starts
-- (one that was never placed is deleted, and given back); each call's end
-- adds to the metric totals once.
CREATE FUNCTION call_attempts_started() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenant_counters c SET
        day_calls = CASE WHEN c.day = utc_today() THEN c.day_calls ELSE 0 END + 1,
        day = utc_today()
    FROM verifications v
    WHERE v.id = NEW.verification_id AND v.method IN ('dtmf', 'voice') AND c.tenant_id = v.tenant_id;
    IF NEW.ended_at IS NOT NULL THEN
        PERFORM metric_add('dial_outcomes', ARRAY[coalesce(NEW.outcome, 'unknown'), metric_cause(NEW.cause)], 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION call_attempts_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenant_counters c SET day_calls = greatest(c.day_calls - 1, 0)
    FROM verifications v
    WHERE v.id = OLD.verification_id AND v.method IN ('dtmf', 'voice') AND c.tenant_id = v.tenant_id
      AND c.day = utc_today() AND OLD.started_at >= utc_today()::timestamp AT TIME ZONE 'UTC';
    RETURN NULL;
END
$$;

CREATE FUNCTION call_attempts_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_add('dial_outcomes', ARRAY[coalesce(NEW.outcome, 'unknown'), metric_cause(NEW.cause)], 1);
    RETURN NULL;
END
$$;

DROP TRIGGER call_attempts_created_counts ON call_attempts;
DROP TRIGGER call_attempts_ended_counts ON call_attempts;
DROP FUNCTION count_call_attempts_ended();

CREATE TRIGGER call_attempts_started AFTER INSERT ON call_attempts
    FOR EACH ROW EXECUTE FUNCTION call_attempts_started();
CREATE TRIGGER call_attempts_deleted AFTER DELETE ON call_attempts
    FOR EACH ROW EXECUTE FUNCTION call_attempts_deleted();
CREATE TRIGGER call_attempts_ended AFTER UPDATE OF ended_at ON call_attempts
    FOR EACH ROW WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
    EXECUTE FUNCTION call_attempts_ended();

-- The same for webhooks: a row trigger where the delivery ends.
CREATE FUNCTION webhook_delivery_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_add('webhooks', ARRAY[CASE WHEN NEW.delivered_at IS NOT NULL THEN 'delivered' ELSE 'given_up' END], 1);
    RETURN NULL;
END
$$;

DROP TRIGGER webhook_deliveries_ended_counts ON webhook_deliveries;
DROP FUNCTION count_webhook_deliveries_ended();

CREATE TRIGGER webhook_delivery_ended AFTER UPDATE OF delivered_at, gave_up_at ON webhook_deliveries
    FOR EACH ROW WHEN ((OLD.delivered_at IS NULL AND NEW.delivered_at IS NOT NULL)
                       OR (OLD.gave_up_at IS NULL AND NEW.gave_up_at IS NOT NULL))
    EXECUTE FUNCTION webhook_delivery_ended();

-- The counters as the data stands (requests of the last minute, calls of
-- today, queued requests).
INSERT INTO tenant_counters (tenant_id, day, day_calls, queued_calls)
SELECT t.id, utc_today(),
    (SELECT count(*) FROM call_attempts c JOIN verifications v ON v.id = c.verification_id
      WHERE v.tenant_id = t.id AND v.method IN ('dtmf', 'voice')
        AND c.started_at >= utc_today()::timestamp AT TIME ZONE 'UTC'),
    (SELECT count(*) FROM verifications v
      WHERE v.tenant_id = t.id AND v.method IN ('dtmf', 'voice') AND v.status = 'queued')
FROM tenants t;

UPDATE tenant_counters c SET
    minute_seconds[minute_slot(m.sec)] = m.sec,
    minute_counts[minute_slot(m.sec)] = m.n
FROM (
    SELECT tenant_id, floor(extract(epoch FROM created_at))::bigint AS sec, count(*)::int AS n
    FROM verifications WHERE created_at > now() - interval '60 seconds'
    GROUP BY 1, 2
) m
WHERE c.tenant_id = m.tenant_id;

-- The last failed request to a number, for the failure cool-down: one row
-- read, not every failure the number ever had.
CREATE INDEX verifications_failed ON verifications (tenant_id, phone, finished_at) WHERE status = 'failed';

-- Whether a tenant may create one more request now: NULL reason if so, else
-- the limit it is over, with the seconds until it may (retry_after) and the
-- count that tripped it. Locks the tenant's counters row until the end of
-- the transaction, which the create's insert (the same statement) ends at
-- once: two creates of a tenant cannot pass a limit together, and neither
-- waits on a scan. The limits are the tenant's own or the config's
-- (Policy); 0 turns the budget and the cool-down off.
CREATE FUNCTION limit_check(
    p_tenant uuid, p_phone text, p_calling boolean, p_requests_per_minute int, p_sends_per_phone int,
    p_phone_window int, p_failure_cooldown int, p_daily_call_budget int
) RETURNS TABLE (reason text, retry_after double precision, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c tenant_counters;
    now_epoch double precision := extract(epoch FROM now());
    sec bigint := floor(extract(epoch FROM now()))::bigint;
    counted bigint;
    oldest double precision;
    oldest_at timestamptz;
    last_failure timestamptz;
BEGIN
    SELECT * INTO c FROM tenant_counters WHERE tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO tenant_counters (tenant_id) VALUES (p_tenant) ON CONFLICT DO NOTHING;
        SELECT * INTO c FROM tenant_counters WHERE tenant_id = p_tenant FOR UPDATE;
    END IF;

    SELECT coalesce(sum(u.n), 0), min(u.s) INTO counted, oldest
    FROM unnest(c.minute_seconds, c.minute_counts) AS u(s, n)
    WHERE u.s > sec - 60 AND u.n > 0;
    IF counted >= p_requests_per_minute THEN
        RETURN QUERY SELECT 'requests_per_minute'::text, greatest(oldest + 60 - now_epoch, 0), counted;
        RETURN;
    END IF;
    IF NOT p_calling THEN
        RETURN QUERY SELECT NULL::text, NULL::double precision, NULL::bigint;
        RETURN;
    END IF;

    -- Requests that called the number, or still may: not those ended before
    -- any call (canceled or expired while queued). A call that failed on its
    -- trunk gives its attempt back but keeps its call_attempts row. Read
    -- through (tenant_id, phone, created_at): this number's requests in the
    -- window, which the limit itself keeps few.
    SELECT count(*), min(v.created_at) INTO counted, oldest_at FROM verifications v
    WHERE v.tenant_id = p_tenant AND v.phone = p_phone AND v.method IN ('dtmf', 'voice')
      AND v.created_at > now() - make_interval(secs => p_phone_window)
      AND (v.status IN ('queued', 'calling', 'in_call', 'delivered') OR v.call_attempts > 0
           OR EXISTS (SELECT 1 FROM call_attempts a WHERE a.verification_id = v.id));
    IF counted >= p_sends_per_phone THEN
        RETURN QUERY SELECT 'sends_per_phone'::text,
            greatest(extract(epoch FROM oldest_at) + p_phone_window - now_epoch, 0), counted;
        RETURN;
    END IF;

    IF p_failure_cooldown > 0 THEN
        SELECT max(v.finished_at) INTO last_failure FROM verifications v
        WHERE v.tenant_id = p_tenant AND v.phone = p_phone AND v.status = 'failed';
        IF last_failure > now() - make_interval(secs => p_failure_cooldown) THEN
            RETURN QUERY SELECT 'failure_cooldown'::text,
                extract(epoch FROM last_failure) + p_failure_cooldown - now_epoch, NULL::bigint;
            RETURN;
        END IF;
    END IF;

    IF p_daily_call_budget > 0 THEN
        counted := CASE WHEN c.day = utc_today() THEN c.day_calls ELSE 0 END + c.queued_calls;
        IF counted >= p_daily_call_budget THEN
            RETURN QUERY SELECT 'daily_call_budget'::text,
                extract(epoch FROM (utc_today() + 1)::timestamp AT TIME ZONE 'UTC') - now_epoch, counted;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT NULL::text, NULL::double precision, NULL::bigint;
END
$$;
