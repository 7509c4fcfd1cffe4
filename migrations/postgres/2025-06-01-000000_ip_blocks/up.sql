-- Blocked client addresses and ranges, refused before any other work. SQL is their
-- authority: manual blocks survive restarts, and every instance reads them into a local
-- snapshot (refreshed every second) so that the per-request check calls no store.
CREATE TABLE ip_blocks (
    -- Canonical `network/prefix` text: 192.0.2.7/32, 198.51.100.0/24, 2001:db8::/32.
    net TEXT PRIMARY KEY,
    -- NULL: blocked until an operator lifts it.
    expires_at TIMESTAMPTZ,
    -- credential_stuffing, token_guessing or manual.
    reason TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ip_blocks_expires_at_idx ON ip_blocks (expires_at);
