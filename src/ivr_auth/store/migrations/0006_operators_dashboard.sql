-- ivr-auth schema, version 6: the operators' dashboard.

-- People who run the service. They log in to /dashboard with a token
-- (`ivr-auth operator add NAME`), kept as a keyed hash like the tenants' API
-- keys but in a table of its own: a tenant's key never opens the dashboard.
-- A login is a signed cookie carrying its issue time; logging out moves
-- sessions_valid_after on, which ends every session issued before.
CREATE TABLE operators (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    prefix text NOT NULL UNIQUE,
    token_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sessions_valid_after timestamptz NOT NULL DEFAULT '-infinity',
    revoked_at timestamptz
);

-- What each controller process last said of itself, every few seconds: its
-- Asterisk node, whether the ARI events websocket is up, its calls, and its
-- trunks (name, up, seconds until retried, calls). The dashboard's node and
-- trunk health; a row not refreshed for a while is a controller gone.
CREATE TABLE controllers (
    name text PRIMARY KEY,
    node text NOT NULL,
    ari_connected boolean NOT NULL,
    calls int NOT NULL,
    trunks jsonb NOT NULL DEFAULT '[]',
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);

-- The dashboard's "latest requests" and today's counts, and the calls not
-- ended yet (the /metrics scrape reads those too).
CREATE INDEX verifications_created ON verifications (created_at);
CREATE INDEX call_attempts_open ON call_attempts (started_at) WHERE ended_at IS NULL;
