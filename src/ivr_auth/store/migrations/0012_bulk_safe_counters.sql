-- ivr-auth schema, version 12: the counters' triggers stay cheap in bulk.
--
-- A row trigger that updates one tenant's counters row, fired for every row
-- of a large statement, makes that row a chain of versions the statement
-- has to walk each time (quadratic). A call's row is deleted by the service
-- only for a call never placed (never ended); a tenant removed with its
-- history deletes its calls without a trigger per finished call.
DROP TRIGGER call_attempts_deleted ON call_attempts;
CREATE TRIGGER call_attempts_deleted AFTER DELETE ON call_attempts
    FOR EACH ROW WHEN (OLD.ended_at IS NULL)
    EXECUTE FUNCTION call_attempts_deleted();
