-- ivr-auth schema, version 4: tenant controls, abuse limits, retention.

-- Per-tenant limits; NULL means the config's default (section "limits").
-- allowed_countries / allowed_prefixes empty: every destination allowed.
ALTER TABLE tenants
    ADD COLUMN allowed_countries text[] NOT NULL DEFAULT '{}',
    ADD COLUMN allowed_prefixes text[] NOT NULL DEFAULT '{}',
    ADD COLUMN requests_per_minute int,
    ADD COLUMN sends_per_phone int,
    ADD COLUMN sends_per_phone_window_seconds int,
    ADD COLUMN daily_call_budget int,
    ADD COLUMN failure_cooldown_seconds int,
    ADD COLUMN retention_days int;

-- Set when the retention purge anonymised the request.
ALTER TABLE verifications ADD COLUMN purged_at timestamptz;

CREATE INDEX verifications_tenant_phone ON verifications (tenant_id, phone, created_at);
CREATE INDEX verifications_finished ON verifications (finished_at) WHERE purged_at IS NULL;
CREATE INDEX call_attempts_started ON call_attempts (started_at);

-- What an operator needs to see that belongs to no single request: refused
-- requests (rate limits, disallowed destinations), prefix alarms, purges.
-- tenant_id NULL: about the whole service.
CREATE TABLE tenant_events (
    id bigserial PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    type text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX tenant_events_by_tenant ON tenant_events (tenant_id, id);
CREATE INDEX tenant_events_by_type ON tenant_events (type, at);
