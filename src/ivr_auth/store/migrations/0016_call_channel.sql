-- ivr-auth schema, version 16: the channel a call served.
--
-- A request's method changes with its channel (version 15); its calls keep
-- the one they served, for the usage report. (IF NOT EXISTS: development
-- databases that had an early version 15 may have it already.)
ALTER TABLE call_attempts ADD COLUMN IF NOT EXISTS method text;
