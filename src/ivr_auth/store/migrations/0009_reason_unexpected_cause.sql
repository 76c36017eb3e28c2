-- ivr-auth schema, version 9: the reasons are a documented list
-- (ivr_auth/reasons.py). A call that ended before its answer on a cause
-- nobody knows was given the reason "error", the same word as its status;
-- it is now "unexpected_cause". Rows written before keep their history in
-- verification_events; the request's own reason follows the list.
UPDATE verifications SET reason = 'unexpected_cause' WHERE reason = 'error';
