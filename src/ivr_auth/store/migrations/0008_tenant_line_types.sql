-- ivr-auth schema, version 8: which line types a tenant's requests may call.

-- Names from phone.LINE_TYPES (mobile, fixed, toll_free, ...); NULL means
-- the config's limits.allowed_line_types. Never empty: a tenant that calls
-- nothing is a tenant to remove, not a list to keep.
ALTER TABLE tenants
    ADD COLUMN allowed_line_types text[] CHECK (cardinality(allowed_line_types) > 0);
