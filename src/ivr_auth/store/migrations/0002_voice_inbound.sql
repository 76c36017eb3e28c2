-- ivr-auth schema, version 2: voice read-out and inbound caller-ID verification.

-- Per tenant: whether the callee must press a key before a code is read out
-- (an answering machine must never record it), the published numbers its
-- users call for inbound verification, and missed-call mode (a matched
-- inbound call is rejected unanswered, so the caller pays nothing).
ALTER TABLE tenants
    ADD COLUMN voice_require_key boolean NOT NULL DEFAULT true,
    ADD COLUMN inbound_numbers text[] NOT NULL DEFAULT '{}',
    ADD COLUMN missed_call boolean NOT NULL DEFAULT false;

-- Per request: who answered the last call (human / machine / unknown), the
-- number an inbound request's user must call (E.164), whether an inbound
-- call must also key the code, and when the code was read out completely.
ALTER TABLE verifications
    ADD COLUMN answered_by text CHECK (answered_by IN ('human', 'machine', 'unknown')),
    ADD COLUMN inbound_number text,
    ADD COLUMN ask_code boolean NOT NULL DEFAULT false,
    ADD COLUMN delivered_at timestamptz;

-- Inbound calls look up a caller's pending request by number and DID.
CREATE INDEX verifications_inbound_pending ON verifications (phone, inbound_number)
    WHERE method = 'inbound' AND status = 'queued';

-- Delivered voice requests wait for a check and expire like queued ones.
CREATE INDEX verifications_delivered ON verifications (expires_at) WHERE status = 'delivered';
