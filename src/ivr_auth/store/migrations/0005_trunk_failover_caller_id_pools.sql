-- ivr-auth schema, version 5: caller-ID pools per tenant, trunk failover.

-- Caller IDs (E.164) a tenant's calls present in turn; empty: its caller_id,
-- or else the trunk's. The cursor counts the calls that took one from the
-- pool: every controller sharing the database continues the one rotation.
ALTER TABLE tenants
    ADD COLUMN caller_id_pool text[] NOT NULL DEFAULT '{}',
    ADD COLUMN caller_id_cursor bigint NOT NULL DEFAULT 0;

-- Calls of a request that failed on their trunk (503, time-out) and were
-- placed again through another trunk without counting as an attempt. Part of
-- the next call's channel id, which must differ from the failed call's.
ALTER TABLE verifications ADD COLUMN trunk_failovers int NOT NULL DEFAULT 0;
