-- The authoritative store: accounts, sessions, verifications and the revocation journal.
-- Tokens are never stored, only the SHA-256 of their secret (32 bytes).
-- Timestamps are BIGINT microseconds since the Unix epoch (UTC): they compare and sort
-- correctly in SQL and round-trip at the precision of the clock.

CREATE TABLE users (
    id BIGINT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    -- NULL for a profile written through the cache interface: such an account cannot log in.
    password_hash TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- No foreign key to users: sessions are keyed by (user_id, token_hash) and the stores are
-- tested on users they never created.
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    user_agent TEXT,
    ip TEXT,
    version BIGINT NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE verifications (
    token_hash BLOB PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    identifier TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX verifications_user_id_purpose_idx ON verifications (user_id, purpose);
CREATE INDEX verifications_expires_at_idx ON verifications (expires_at);

-- One row per revocation, written in the transaction of the delete: token_hash set for
-- one session, NULL for all of a user's sessions (created at or before revoked_at)
-- except keep_hash. Replayed into Redis after a reconnect; consulted by `put`.
CREATE TABLE session_revocations (
    id INTEGER PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL,
    token_hash BLOB,
    keep_hash BLOB,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX session_revocations_revoked_at_idx ON session_revocations (revoked_at);
CREATE INDEX session_revocations_user_id_idx ON session_revocations (user_id);
