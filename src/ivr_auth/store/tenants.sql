-- Named queries of the tenants (ivr_auth/store/tenants.py): their settings,
-- API keys (kept as keyed hashes) and webhook secrets (sealed).
--
-- A statement that changes what the API keeps of a tenant in its key cache
-- (its row, its keys) sends pg_notify('ivr_auth_tenants', the tenant's id)
-- itself, so that no caller can forget it (tenants.TENANTS_CHANNEL).

-- name: create_tenant
INSERT INTO tenants (name, caller_id, default_language)
VALUES (%(name)s, %(caller_id)s, %(default_language)s)
RETURNING *;

-- name: tenant_by_name
SELECT * FROM tenants WHERE name = %(name)s;

-- name: tenant_by_id
SELECT * FROM tenants WHERE id = %(id)s;

-- name: create_api_key
WITH created AS (
    INSERT INTO api_keys (tenant_id, prefix, key_hash)
    VALUES (%(tenant_id)s, %(prefix)s, %(key_hash)s)
    RETURNING id, tenant_id
)
SELECT created.id FROM created, pg_notify('ivr_auth_tenants', created.tenant_id::text);

-- name: api_key_by_prefix
SELECT k.key_hash, t.*
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.prefix = %(prefix)s AND k.revoked_at IS NULL;

-- name: set_webhook_secret
UPDATE tenants SET webhook_secret_sealed = %(sealed)s WHERE id = %(id)s RETURNING id;

-- name: update_tenant
WITH updated AS (
UPDATE tenants SET
    caller_id = CASE WHEN %(set_caller_id)s::boolean THEN %(caller_id)s::text ELSE caller_id END,
    default_language = CASE WHEN %(set_default_language)s::boolean THEN %(default_language)s::text
                            ELSE default_language END,
    voice_require_key = coalesce(%(voice_require_key)s::boolean, voice_require_key),
    inbound_numbers = coalesce(%(inbound_numbers)s::text[], inbound_numbers),
    missed_call = coalesce(%(missed_call)s::boolean, missed_call),
    caller_id_pool = coalesce(%(caller_id_pool)s::text[], caller_id_pool)
WHERE name = %(name)s
RETURNING *
)
SELECT updated.* FROM updated, pg_notify('ivr_auth_tenants', updated.id::text);

-- name: next_pool_caller_id
-- The tenant's next caller ID from its pool. The row lock of the UPDATE
-- makes each turn atomic across every controller. No row: no pool. No
-- NOTIFY: the cursor is nothing the API reads, and this runs per call.
UPDATE tenants SET caller_id_cursor = caller_id_cursor + 1
WHERE id = %(id)s AND cardinality(caller_id_pool) > 0
RETURNING caller_id_pool[1 + (caller_id_cursor - 1) %% cardinality(caller_id_pool)] AS caller_id;

-- name: tenants_for_did
-- Tenants publishing this number; for a number from the config's shared
-- list, the tenants with no numbers of their own.
SELECT * FROM tenants
WHERE %(did)s = ANY(inbound_numbers) OR (%(shared)s::boolean AND inbound_numbers = '{}')
ORDER BY created_at;
