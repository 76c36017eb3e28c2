-- ivr-auth schema, version 15: codes by SMS, and fallback from one channel
-- to the next.
--
-- A request may name an ordered list of channels (sms, voice, dtmf), each
-- after a wait (channels, a JSON array; NULL: its method alone). `method` is
-- the channel in use now, channel_index its place in the list. The next
-- channel starts at next_channel_at while the request is still open (the
-- controllers' reaper moves it, advance_channels), or at once when the
-- current channel ends without a verification (the transition statement).
--
-- An SMS to send is a row of sms_messages, written in the statement that
-- starts the sms channel, and sent by an `ivr-auth sms` process that claims
-- it under a lease (an outbox, as for webhooks: a crash loses none). Its
-- parts, by the message id the carrier gave each, match delivery receipts.
ALTER TABLE verifications DROP CONSTRAINT verifications_method_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_method_check
    CHECK (method IN ('dtmf', 'voice', 'inbound', 'sms'));
ALTER TABLE verifications DROP CONSTRAINT verifications_status_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_status_check CHECK (status IN (
    'queued', 'calling', 'in_call', 'sent', 'delivered', 'verified', 'failed', 'no_answer', 'busy',
    'rejected', 'unreachable', 'hung_up', 'expired', 'canceled', 'error'));

-- [{"channel": "sms", "after_seconds": 0, "max_call_attempts": 3}, ...]
ALTER TABLE verifications ADD COLUMN channels jsonb;
ALTER TABLE verifications ADD COLUMN channel_index int NOT NULL DEFAULT 0;
ALTER TABLE verifications ADD COLUMN next_channel_at timestamptz;
ALTER TABLE verifications ADD COLUMN sent_at timestamptz;
CREATE INDEX verifications_next_channel ON verifications (next_channel_at) WHERE next_channel_at IS NOT NULL;

CREATE TABLE sms_messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    verification_id uuid NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- the request's channel this message serves: a request that moved on
    -- from it no longer sends it
    channel_index int NOT NULL,
    -- queued (due at next_attempt_at), sending (leased by a sender), sent
    -- (every part accepted), delivered / failed (receipts), canceled (the
    -- request ended or moved on before it was sent)
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'canceled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts int NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires_at timestamptz,
    carrier text,
    encoding text,
    parts int,
    submitted_at timestamptz,
    finished_at timestamptz,
    -- delivered, refused, undeliverable, expired, canceled
    outcome text,
    command_status int,
    receipt_stat text,
    receipt_err text,
    last_error text
);
CREATE INDEX sms_messages_due ON sms_messages (next_attempt_at) WHERE status = 'queued';
CREATE INDEX sms_messages_leases ON sms_messages (lease_expires_at) WHERE status = 'sending';
CREATE INDEX sms_messages_by_request ON sms_messages (verification_id);
CREATE INDEX sms_messages_tenant_created ON sms_messages (tenant_id, created_at);

CREATE TABLE sms_parts (
    carrier text NOT NULL,
    message_id text NOT NULL,
    sms_id uuid NOT NULL REFERENCES sms_messages (id) ON DELETE CASCADE,
    part int NOT NULL,
    stat text,
    err text,
    receipt_at timestamptz,
    PRIMARY KEY (carrier, message_id)
);
CREATE INDEX sms_parts_by_message ON sms_parts (sms_id);

-- Messages a tenant sent today, for limits.daily_sms_budget (SMS pumping:
-- the receiving side of a premium range earns from every message).
ALTER TABLE tenant_counters ADD COLUMN day_sms int NOT NULL DEFAULT 0;
ALTER TABLE tenant_counters ADD COLUMN sms_day date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date;

CREATE FUNCTION sms_messages_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..2 LOOP
        UPDATE tenant_counters c SET
            day_sms = CASE WHEN c.sms_day = utc_today() THEN c.day_sms ELSE 0 END + 1,
            sms_day = utc_today()
        WHERE c.tenant_id = NEW.tenant_id;
        EXIT WHEN FOUND;
        INSERT INTO tenant_counters (tenant_id) VALUES (NEW.tenant_id) ON CONFLICT DO NOTHING;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER sms_messages_inserted AFTER INSERT ON sms_messages
    FOR EACH ROW EXECUTE FUNCTION sms_messages_inserted();

-- Each message's end counts once in the metric totals (outcome).
CREATE FUNCTION sms_message_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_add('sms_outcomes', ARRAY[coalesce(NEW.outcome, 'unknown'), coalesce(NEW.encoding, 'none')], 1);
    RETURN NULL;
END
$$;
CREATE TRIGGER sms_message_ended AFTER UPDATE OF finished_at ON sms_messages
    FOR EACH ROW WHEN (OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION sms_message_ended();

-- limit_check (version 10) with SMS: a request that sends an SMS is a send
-- to the number as a call is (sends_per_phone, the failure cool-down), the
-- call budget applies where a channel calls, and the SMS budget where one
-- sends an SMS.
DROP FUNCTION limit_check(uuid, text, boolean, int, int, int, int, int);
CREATE FUNCTION limit_check(
    p_tenant uuid, p_phone text, p_calling boolean, p_requests_per_minute int, p_sends_per_phone int,
    p_phone_window int, p_failure_cooldown int, p_daily_call_budget int,
    p_sms boolean, p_daily_sms_budget int
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
    IF NOT (p_calling OR p_sms) THEN
        RETURN QUERY SELECT NULL::text, NULL::double precision, NULL::bigint;
        RETURN;
    END IF;

    -- Requests that called the number, or still may: not those ended before
    -- any call (canceled or expired while queued). A call that failed on its
    -- trunk gives its attempt back but keeps its call_attempts row. Read
    -- through (tenant_id, phone, created_at): this number's requests in the
    -- window, which the limit itself keeps few.
    SELECT count(*), min(v.created_at) INTO counted, oldest_at FROM verifications v
    WHERE v.tenant_id = p_tenant AND v.phone = p_phone AND v.method IN ('dtmf', 'voice', 'sms')
      AND v.created_at > now() - make_interval(secs => p_phone_window)
      AND (v.status IN ('queued', 'calling', 'in_call', 'sent', 'delivered') OR v.call_attempts > 0
           OR EXISTS (SELECT 1 FROM call_attempts a WHERE a.verification_id = v.id)
           OR EXISTS (SELECT 1 FROM sms_messages m WHERE m.verification_id = v.id AND m.submitted_at IS NOT NULL));
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

    IF p_calling AND p_daily_call_budget > 0 THEN
        counted := CASE WHEN c.day = utc_today() THEN c.day_calls ELSE 0 END + c.queued_calls;
        IF counted >= p_daily_call_budget THEN
            RETURN QUERY SELECT 'daily_call_budget'::text,
                extract(epoch FROM (utc_today() + 1)::timestamp AT TIME ZONE 'UTC') - now_epoch, counted;
            RETURN;
        END IF;
    END IF;
    IF p_sms AND p_daily_sms_budget > 0 THEN
        counted := CASE WHEN c.sms_day = utc_today() THEN c.day_sms ELSE 0 END;
        IF counted >= p_daily_sms_budget THEN
            RETURN QUERY SELECT 'daily_sms_budget'::text,
                extract(epoch FROM (utc_today() + 1)::timestamp AT TIME ZONE 'UTC') - now_epoch, counted;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT NULL::text, NULL::double precision, NULL::bigint;
END
$$;

-- The queued calls counter follows a request that changes channel too: a
-- queued sms request that moves on to voice is a call to come, and back.
CREATE OR REPLACE FUNCTION verifications_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    was int := CASE WHEN OLD.method IN ('dtmf', 'voice') AND OLD.status = 'queued' THEN 1 ELSE 0 END;
    now_is int := CASE WHEN NEW.method IN ('dtmf', 'voice') AND NEW.status = 'queued' THEN 1 ELSE 0 END;
BEGIN
    IF was <> now_is THEN
        UPDATE tenant_counters SET queued_calls = greatest(queued_calls + now_is - was, 0)
        WHERE tenant_id = NEW.tenant_id;
    END IF;
    IF OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM metric_add('request_transitions', ARRAY[NEW.method, NEW.status], 1);
        PERFORM pg_notify('ivr_auth_status', NEW.id::text || ' ' || NEW.status);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER verifications_status_changed ON verifications;
CREATE TRIGGER verifications_status_changed AFTER UPDATE OF status, method ON verifications
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.method IS DISTINCT FROM NEW.method)
    EXECUTE FUNCTION verifications_status_changed();
