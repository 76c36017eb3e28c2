-- ivr-auth schema, version 14: a trunk's calls are its calls up, not its
-- requests in progress.
--
-- A request is settled (verified, say) while its call still says goodbye:
-- counting a trunk's calls by its requests in progress (version 13) let more
-- calls up at once than max_channels. A trunk's calls are now its call rows
-- not yet ended, plus the requests claimed for it whose call has no row yet
-- (channel_id NULL: the claim clears the last attempt's, the call's start
-- sets it with the row). A call row counts while its request is being
-- called, and for a minute after the request is settled (its goodbye): a row
-- a controller that died left open counts no longer than that.
DROP INDEX verifications_trunk_busy;
CREATE INDEX verifications_trunk_claimed ON verifications (trunk) WHERE status = 'calling' AND channel_id IS NULL;
CREATE INDEX call_attempts_open_by_trunk ON call_attempts (trunk) WHERE ended_at IS NULL;

CREATE OR REPLACE FUNCTION claim_paced(
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
        SELECT (
            SELECT count(*) FROM call_attempts c JOIN verifications v ON v.id = c.verification_id
            WHERE c.trunk = p_trunks[i] AND c.ended_at IS NULL
              AND (v.status IN ('calling', 'in_call') OR v.finished_at > now() - interval '1 minute')
        ) + (
            SELECT count(*) FROM verifications
            WHERE trunk = p_trunks[i] AND status = 'calling' AND channel_id IS NULL
        ) INTO v_busy;
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
            trunk = a.trunk,
            channel_id = NULL
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

