-- ivr-auth schema, version 3: signed webhooks from an outbox.

-- The secret a tenant's webhooks are signed with, sealed under the server
-- key (signing needs it in clear, so it cannot be a hash).
ALTER TABLE tenants ADD COLUMN webhook_secret_sealed bytea;

-- One row per event to deliver, written in the same transaction as the
-- state change it reports. Its id is the event id receivers de-duplicate on.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    verification_id uuid NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url text NOT NULL,
    event_type text NOT NULL,
    -- the exact JSON sent, every attempt alike
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts int NOT NULL DEFAULT 0,
    delivered_at timestamptz,
    gave_up_at timestamptz,
    last_status_code int,
    last_error text
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX webhook_deliveries_by_request ON webhook_deliveries (verification_id, created_at);

-- Every attempt, for the request's delivery log.
CREATE TABLE webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempt int NOT NULL,
    status_code int,
    error text,
    duration_ms int NOT NULL
);

CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
