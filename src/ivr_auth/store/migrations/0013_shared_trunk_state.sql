-- ivr-auth schema, version 13: one trunk, one limit, whichever controllers
-- share it.
--
-- A trunk's calls_per_second and max_channels hold across every controller
-- that dials through it: its token bucket lives here (trunk_state), and the
-- calls it carries are the requests being called through it (the trunk a
-- claim gave each request, in verifications.trunk, counted while calling or
-- in a call). The claim takes both in the statement it already is
-- (claim_paced), so pacing adds no round trip. A trunk a controller finds
-- failing is marked down here for the others too (down_until).
CREATE TABLE trunk_state (
    trunk text PRIMARY KEY,
    -- The shared bucket: tokens as of refilled_at (refilled on every claim).
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    -- A call failed on the trunk's side: skip it until then where another is up.
    down_until timestamptz,
    down_by text
);

-- The trunk of the request's current call (NULL before its first claim, and
-- for inbound requests).
ALTER TABLE verifications ADD COLUMN trunk text;
CREATE INDEX verifications_trunk_busy ON verifications (trunk) WHERE status IN ('calling', 'in_call');

-- Claims up to sum(p_rooms) due requests and gives each a trunk, within what
-- each trunk may take now: p_rooms (what the controller has room for on it),
-- its shared tokens (rate p_rates, burst p_bursts per second) and its
-- channels left (p_max less the requests being called through it by anyone).
-- Lower p_ranks are taken first; equal ranks take turns, starting with the
-- first listed. Returns the requests claimed (status calling, trunk set) and
-- then those due that no trunk could take now (still queued, trunk as it
-- was): a caller that gets some of those knows there is work waiting for
-- room. Requests are locked first (SKIP LOCKED), then the trunks' rows in
-- name order, by every controller alike: no deadlock.
CREATE FUNCTION claim_paced(
    p_owner text, p_node text, p_lease_seconds double precision,
    p_trunks text[], p_ranks int[], p_rooms int[],
    p_rates double precision[], p_bursts double precision[], p_max int[]
) RETURNS SETOF verifications LANGUAGE plpgsql AS $$
DECLARE
    v_ids uuid[];
    v_due int;
    v_count int := coalesce(array_length(p_trunks, 1), 0);
    v_room int[];
    v_taken int[];
    v_assigned text[] := '{}';
    v_now timestamptz := clock_timestamp();
    v_tokens double precision;
    v_busy int;
    v_best int;
    i int;
BEGIN
    IF v_count = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(p.id ORDER BY p.next_attempt_at, p.created_at) INTO v_ids FROM (
        SELECT id, next_attempt_at, created_at FROM verifications
        WHERE status = 'queued' AND next_attempt_at <= now() AND expires_at > now()
          AND method IN ('dtmf', 'voice')
        ORDER BY next_attempt_at, created_at
        LIMIT (SELECT sum(r) FROM unnest(p_rooms) r)
        FOR UPDATE SKIP LOCKED
    ) p;
    v_due := coalesce(array_length(v_ids, 1), 0);
    IF v_due = 0 THEN
        RETURN;
    END IF;

    INSERT INTO trunk_state (trunk, tokens, refilled_at)
    SELECT t, b, v_now FROM unnest(p_trunks, p_bursts) x (t, b)
    ON CONFLICT (trunk) DO NOTHING;
    PERFORM 1 FROM trunk_state WHERE trunk = ANY (p_trunks) ORDER BY trunk FOR UPDATE;

    v_room := p_rooms;
    v_taken := array_fill(0, ARRAY[v_count]);
    FOR i IN 1 .. v_count LOOP
        SELECT least(p_bursts[i], s.tokens + greatest(0, extract(epoch FROM v_now - s.refilled_at)) * p_rates[i])
        INTO v_tokens FROM trunk_state s WHERE s.trunk = p_trunks[i];
        SELECT count(*) INTO v_busy FROM verifications
        WHERE trunk = p_trunks[i] AND status IN ('calling', 'in_call');
        v_room[i] := greatest(0, least(v_room[i], floor(v_tokens + 1e-9)::int, p_max[i] - v_busy));
        UPDATE trunk_state SET tokens = v_tokens, refilled_at = v_now WHERE trunk = p_trunks[i];
    END LOOP;

    FOR n IN 1 .. v_due LOOP
        v_best := NULL;
        FOR i IN 1 .. v_count LOOP
            IF v_taken[i] < v_room[i] AND (
                v_best IS NULL OR p_ranks[i] < p_ranks[v_best]
                OR (p_ranks[i] = p_ranks[v_best] AND v_taken[i] < v_taken[v_best])
            ) THEN
                v_best := i;
            END IF;
        END LOOP;
        EXIT WHEN v_best IS NULL;
        v_taken[v_best] := v_taken[v_best] + 1;
        v_assigned := v_assigned || p_trunks[v_best];
    END LOOP;

    UPDATE trunk_state s SET tokens = s.tokens - x.taken
    FROM unnest(p_trunks, v_taken) x (t, taken)
    WHERE s.trunk = x.t AND x.taken > 0;

    RETURN QUERY
    WITH assigned AS (
        SELECT a.id, a.trunk FROM unnest(v_ids[1:cardinality(v_assigned)], v_assigned) a (id, trunk)
    ), updated AS (
        UPDATE verifications v SET
            status = 'calling',
            updated_at = now(),
            call_attempts = v.call_attempts + 1,
            lease_owner = p_owner,
            lease_expires_at = now() + make_interval(secs => p_lease_seconds),
            node = p_node,
            trunk = a.trunk
        FROM assigned a WHERE v.id = a.id
        RETURNING v.*
    ), event AS (
        INSERT INTO verification_events (verification_id, type, from_status, to_status, detail)
        SELECT id, 'status', 'queued', 'calling',
               jsonb_build_object('attempt', call_attempts, 'controller', p_owner, 'node', p_node, 'trunk', trunk)
        FROM updated
    )
    SELECT * FROM updated;

    RETURN QUERY SELECT * FROM verifications WHERE id = ANY (v_ids[cardinality(v_assigned) + 1:]);
END
$$;

-- A trunk failing for one controller is down for all: for p_seconds from
-- now (a later end already set stays), and every controller is told at once
-- (NOTIFY ivr_auth_trunks, the trunk's name). Returns the seconds it is down for.
CREATE FUNCTION trunk_mark_down(p_trunk text, p_seconds double precision, p_by text, p_burst double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    v_until timestamptz;
BEGIN
    INSERT INTO trunk_state AS s (trunk, tokens, refilled_at, down_until, down_by)
    VALUES (p_trunk, p_burst, clock_timestamp(), clock_timestamp() + make_interval(secs => p_seconds), p_by)
    ON CONFLICT (trunk) DO UPDATE SET
        down_by = CASE WHEN s.down_until >= excluded.down_until THEN s.down_by ELSE excluded.down_by END,
        down_until = greatest(s.down_until, excluded.down_until)
    RETURNING s.down_until INTO v_until;
    PERFORM pg_notify('ivr_auth_trunks', p_trunk);
    RETURN extract(epoch FROM v_until - clock_timestamp());
END
$$;
