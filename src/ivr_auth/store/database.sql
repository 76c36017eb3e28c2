-- Named queries of the database object itself (ivr_auth/store/database.py).

-- name: ping
SELECT 1;

-- name: statement_timeout
-- For the current transaction only (Database.bounded).
SELECT set_config('statement_timeout', %(timeout_ms)s, true);

-- name: clock
-- Postgres's own clock, read when the statement runs (the doctor's skew check).
SELECT extract(epoch FROM clock_timestamp())::float8 AS epoch;
