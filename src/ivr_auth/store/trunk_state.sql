-- Named queries of the trunks' shared state (ivr_auth/store/trunk_state.py;
-- the table and its functions: migration 13).

-- name: mark_down
-- Returns the seconds the trunk is now down for; tells every controller.
SELECT trunk_mark_down(%(trunk)s, %(seconds)s, %(by)s, %(burst)s) AS seconds;

-- name: down
-- The trunks down now, and for how many more seconds.
SELECT trunk, extract(epoch FROM down_until - clock_timestamp())::float8 AS seconds, down_by
FROM trunk_state WHERE down_until > clock_timestamp()
ORDER BY trunk;
