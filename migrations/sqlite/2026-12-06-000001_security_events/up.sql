-- The per-user security event log (sign-ins, failures, sign-outs, password changes,
-- resets, new devices, lockouts), shown to the user and to administrators, trimmed by
-- the janitor after `events.retention_days`. Never holds a token, password or hash.
-- Timestamps are BIGINT microseconds since the Unix epoch (UTC), as in the other tables.
CREATE TABLE security_events (
    -- AUTOINCREMENT: ids are never reused, so they order events and page them.
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id BIGINT NOT NULL,
    -- sign_in, sign_in_failed, sign_out, ... (cache_core::EventKind::as_str).
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    -- The client address as text, NULL when unknown.
    ip TEXT,
    -- "Firefox on Linux".
    device TEXT,
    -- Browser family, OS family and the address's network: what "the same device" means.
    device_key TEXT
);
-- The new-device and failure-spike checks (a user's events in a time window).
CREATE INDEX security_events_user_at_idx ON security_events (user_id, at);
-- A user's page of events, newest first.
CREATE INDEX security_events_user_id_idx ON security_events (user_id, id);
-- The janitor's trim.
CREATE INDEX security_events_at_idx ON security_events (at);
