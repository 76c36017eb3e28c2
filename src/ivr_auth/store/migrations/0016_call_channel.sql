-- ivr-auth schema, version 16: the channel a call served; sent requests indexed.
--
-- A request's method changes with its channel (version 15); its calls keep
-- the one they served, for the usage report. (IF NOT EXISTS: development
-- databases that had an early version 15 may have it already.)
ALTER TABLE call_attempts ADD COLUMN IF NOT EXISTS method text;

-- Requests whose SMS went out and who have not checked the code yet: read by
-- the reaper's expiry pass and the in-progress gauge, as delivered ones are.
CREATE INDEX IF NOT EXISTS verifications_sent ON verifications (expires_at) WHERE status = 'sent';
