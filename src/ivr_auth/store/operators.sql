-- Named queries of the operators who may open the dashboard and their logins
-- (ivr_auth/store/operators.py). Tokens are kept as keyed hashes.

-- name: create_operator
INSERT INTO operators (name, prefix, token_hash) VALUES (%(name)s, %(prefix)s, %(token_hash)s)
ON CONFLICT (name) DO NOTHING
RETURNING id;

-- name: replace_operator_token
UPDATE operators SET prefix = %(prefix)s, token_hash = %(token_hash)s, sessions_valid_after = now(),
                     revoked_at = NULL
WHERE name = %(name)s
RETURNING id;

-- name: operator_by_prefix
SELECT id, name, token_hash, now() AS now FROM operators WHERE prefix = %(prefix)s AND revoked_at IS NULL;

-- name: operator_session
-- A session issued at %(issued)s: still good unless the operator was revoked,
-- logged out or given a new token since (at the same microsecond counts as
-- since: a tie ends the session).
SELECT id, name FROM operators
WHERE id = %(id)s AND revoked_at IS NULL AND sessions_valid_after < %(issued)s;

-- name: end_operator_sessions
UPDATE operators SET sessions_valid_after = clock_timestamp() WHERE id = %(id)s;

-- name: revoke_operator
UPDATE operators SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL RETURNING id;

-- name: list_operators
SELECT name, prefix, created_at, revoked_at FROM operators ORDER BY name;
