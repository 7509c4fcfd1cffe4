-- Session states of web frameworks (actix-session's `SessionState`), kept by
-- `cache_sql::SqlStore` as a `cache_core::SessionStateStore`. The session key itself is
-- never stored: only its SHA-256. Timestamps are BIGINT microseconds since the Unix
-- epoch (UTC), as in the other tables.
CREATE TABLE session_states (
    key_hash BLOB PRIMARY KEY NOT NULL,
    -- The user the application tied the state to, for "log this user out everywhere".
    user_id BIGINT,
    -- The key/value map as a JSON object of strings.
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX session_states_user_id_idx ON session_states (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX session_states_expires_at_idx ON session_states (expires_at);
