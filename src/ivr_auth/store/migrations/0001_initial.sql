-- ivr-auth schema, version 1: tenants and their API keys, verification
-- requests, the append-only event log of every state change, call attempts.

CREATE TABLE tenants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    caller_id text,
    default_language text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as a keyed hash; the prefix (not secret) finds the row.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix text NOT NULL UNIQUE,
    key_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE verifications (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    method text NOT NULL CHECK (method IN ('dtmf', 'voice', 'inbound')),
    phone text NOT NULL,
    line_type text NOT NULL DEFAULT 'unknown',
    -- keyed hash of the code (never the code itself)
    code_hash bytea NOT NULL,
    -- the code sealed with a server key, for idempotent replays of the create
    -- response and for read-out; wiped when the request ends
    code_sealed bytea,
    code_length int NOT NULL,
    language text NOT NULL,
    reference text,
    callback_url text,
    status text NOT NULL CHECK (status IN (
        'queued', 'calling', 'in_call', 'delivered', 'verified', 'failed', 'no_answer', 'busy',
        'rejected', 'unreachable', 'hung_up', 'expired', 'canceled', 'error')),
    reason text,
    code_attempts int NOT NULL DEFAULT 0,
    max_code_attempts int NOT NULL,
    call_attempts int NOT NULL DEFAULT 0,
    max_call_attempts int NOT NULL,
    idempotency_key text,
    request_hash bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    node text,
    channel_id text,
    answered_at timestamptz,
    finished_at timestamptz,
    last_cause int,
    last_cause_txt text,
    UNIQUE (tenant_id, idempotency_key)
);

CREATE INDEX verifications_queue ON verifications (next_attempt_at) WHERE status = 'queued';
CREATE INDEX verifications_leases ON verifications (lease_expires_at) WHERE status IN ('calling', 'in_call');
CREATE INDEX verifications_tenant_created ON verifications (tenant_id, created_at);

CREATE TABLE verification_events (
    id bigserial PRIMARY KEY,
    verification_id uuid NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    type text NOT NULL,
    from_status text,
    to_status text,
    detail jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX verification_events_by_request ON verification_events (verification_id, id);

CREATE TABLE call_attempts (
    id bigserial PRIMARY KEY,
    verification_id uuid NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    attempt int NOT NULL,
    controller text NOT NULL,
    node text NOT NULL,
    trunk text NOT NULL,
    channel_id text NOT NULL UNIQUE,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    answered_at timestamptz,
    ended_at timestamptz,
    outcome text,
    cause int,
    cause_txt text
);

CREATE INDEX call_attempts_by_request ON call_attempts (verification_id);
