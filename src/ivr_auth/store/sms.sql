-- Named queries of the SMS outbox (ivr_auth/store/sms.py): messages written
-- by the statement that starts a request's sms channel, claimed and sent by
-- `ivr-auth sms` processes, and matched to delivery receipts by their parts.

-- name: claim
-- Due messages (or ones whose sender's lease ran out), leased to %(owner)s.
-- A message whose request ended or moved on to another channel is canceled
-- here instead (it is never sent).
WITH candidates AS (
    SELECT m.id,
        (v.status = 'queued' AND v.method = 'sms' AND v.channel_index = m.channel_index
         AND v.expires_at > now()) AS live
    FROM sms_messages m JOIN verifications v ON v.id = m.verification_id
    WHERE (m.status = 'queued' AND m.next_attempt_at <= now())
       OR (m.status = 'sending' AND m.lease_expires_at < now())
    ORDER BY m.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF m SKIP LOCKED
), dropped AS (
    UPDATE sms_messages m SET status = 'canceled', outcome = 'canceled', finished_at = now(),
        lease_owner = NULL, lease_expires_at = NULL
    FROM candidates c WHERE m.id = c.id AND NOT c.live
), taken AS (
    UPDATE sms_messages m SET status = 'sending', attempts = m.attempts + 1, lease_owner = %(owner)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    FROM candidates c WHERE m.id = c.id AND c.live
    RETURNING m.*
)
SELECT t.id, t.verification_id, t.tenant_id, tn.name AS tenant_name, v.phone, v.language, v.code_sealed,
    t.attempts AS attempt, v.expires_at
FROM taken t
JOIN verifications v ON v.id = t.verification_id
JOIN tenants tn ON tn.id = t.tenant_id
ORDER BY t.next_attempt_at;

-- name: submitted
-- Every part taken by the carrier: the message sent, its parts kept for the
-- receipts (a receipt that comes before this is written finds no part: the
-- sender tries it again a little later).
WITH m AS (
    UPDATE sms_messages SET status = 'sent', carrier = %(carrier)s, encoding = %(encoding)s, parts = %(parts)s,
        submitted_at = now(), lease_owner = NULL, lease_expires_at = NULL, last_error = NULL
    WHERE id = %(id)s AND status = 'sending'
    RETURNING *
), p AS (
    INSERT INTO sms_parts (carrier, message_id, sms_id, part)
    SELECT %(carrier)s, x.message_id, m.id, x.n::int
    FROM m, unnest(%(message_ids)s::text[]) WITH ORDINALITY AS x (message_id, n)
    ON CONFLICT DO NOTHING
)
SELECT * FROM m;

-- name: refused
UPDATE sms_messages SET status = 'failed', outcome = 'refused', carrier = %(carrier)s,
    command_status = %(command_status)s, last_error = %(error)s, finished_at = now(),
    lease_owner = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND status = 'sending'
RETURNING *;

-- name: retry_later
-- Back to due after %(delay)s seconds, while its request still waits for it
-- and has the time; else canceled (no row: drop it).
WITH live AS (
    SELECT m.id, (v.status = 'queued' AND v.method = 'sms' AND v.channel_index = m.channel_index
                  AND v.expires_at > now() + make_interval(secs => %(delay)s)) AS live
    FROM sms_messages m JOIN verifications v ON v.id = m.verification_id
    WHERE m.id = %(id)s AND m.status = 'sending'
), requeued AS (
    UPDATE sms_messages m SET status = 'queued', next_attempt_at = now() + make_interval(secs => %(delay)s),
        lease_owner = NULL, lease_expires_at = NULL, last_error = %(error)s
    FROM live WHERE m.id = live.id AND live.live
    RETURNING m.id
), dropped AS (
    UPDATE sms_messages m SET status = 'canceled', outcome = 'canceled', finished_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, last_error = %(error)s
    FROM live WHERE m.id = live.id AND NOT live.live
)
SELECT id FROM requeued;

-- name: receipt_message
-- The message a part's receipt is for, locked: receipts of its other parts
-- wait, so the last one sees every part's word.
SELECT m.* FROM sms_parts p JOIN sms_messages m ON m.id = p.sms_id
WHERE p.carrier = %(carrier)s AND p.message_id = %(message_id)s
FOR UPDATE OF m;

-- name: record_part
-- The part's receipt, and every part's last word (this one's included).
WITH u AS (
    UPDATE sms_parts SET stat = %(stat)s, err = %(err)s, receipt_at = now()
    WHERE carrier = %(carrier)s AND message_id = %(message_id)s
)
SELECT array_agg(CASE WHEN p.carrier = %(carrier)s AND p.message_id = %(message_id)s THEN %(stat)s ELSE p.stat END
                 ORDER BY p.part) AS stats
FROM sms_parts p WHERE p.sms_id = %(sms_id)s;

-- name: message_ended
UPDATE sms_messages SET status = %(status)s, outcome = %(outcome)s, receipt_stat = %(stat)s,
    receipt_err = %(err)s, finished_at = now()
WHERE id = %(id)s AND status = 'sent';

-- name: messages_for
SELECT * FROM sms_messages WHERE verification_id = %(id)s ORDER BY created_at;
