-- Named queries of the schema's own bookkeeping (ivr_auth/store/migrate.py).

-- name: lock
-- Several processes starting at once apply each migration exactly once.
SELECT pg_advisory_xact_lock(%(lock_id)s);

-- name: create_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: exists
SELECT to_regclass('schema_migrations') IS NOT NULL AS found;

-- name: applied
SELECT version FROM schema_migrations ORDER BY version;

-- name: record
INSERT INTO schema_migrations (version, name) VALUES (%(version)s, %(name)s);
