DROP TRIGGER session_revocations_notify ON session_revocations;
DROP FUNCTION session_revocations_notify();
