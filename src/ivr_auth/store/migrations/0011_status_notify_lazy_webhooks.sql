-- ivr-auth schema, version 11: each status change announced; webhook bodies
-- rendered by their sender.
--
-- Every change of a request's status is announced on the NOTIFY channel
-- ivr_auth_status (payload: the request's id, a space, its new status) by
-- the row trigger that already counts it, whichever statement made it: the
-- API's long-poll GET waits on it.
--
-- A terminal status's webhook row is written by the statement that settles
-- the request, without its body (NULL); the sender renders it from the
-- request, which no longer changes, and keeps it with the first attempt, so
-- that every attempt sends the same bytes. The state change and its webhook
-- stay in one statement, and the change needs no second round trip.
CREATE OR REPLACE FUNCTION verifications_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.method IN ('dtmf', 'voice') AND (OLD.status = 'queued') <> (NEW.status = 'queued') THEN
        UPDATE tenant_counters SET
            queued_calls = greatest(queued_calls + CASE WHEN NEW.status = 'queued' THEN 1 ELSE -1 END, 0)
        WHERE tenant_id = NEW.tenant_id;
    END IF;
    PERFORM metric_add('request_transitions', ARRAY[NEW.method, NEW.status], 1);
    PERFORM pg_notify('ivr_auth_status', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END
$$;

ALTER TABLE webhook_deliveries ALTER COLUMN body DROP NOT NULL;
