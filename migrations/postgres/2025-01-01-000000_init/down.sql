DROP TABLE session_revocations;
DROP TABLE verifications;
DROP TABLE sessions;
DROP TABLE users;
