-- ivr-auth schema, version 17: a tenant's own limits.daily_sms_budget
-- (NULL: the config's), set with `ivr-auth tenant limits NAME --daily-sms-budget N`.
ALTER TABLE tenants ADD COLUMN daily_sms_budget int;
