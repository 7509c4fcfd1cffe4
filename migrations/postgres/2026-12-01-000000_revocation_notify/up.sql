-- Every journal row notifies the instances following the journal (cache_sql::follow),
-- inside the revoking transaction: PostgreSQL delivers the notification at commit,
-- exactly when the row becomes visible, and never for a rolled-back one. The channel is
-- per schema ('revocations_' || md5(schema): a fixed-length identifier whatever the
-- schema's name), so environments sharing a database do not wake each other; the
-- payload is the row's id (the followers read the journal by id anyway).
CREATE FUNCTION session_revocations_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('revocations_' || md5(TG_TABLE_SCHEMA), NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER session_revocations_notify
    AFTER INSERT ON session_revocations
    FOR EACH ROW EXECUTE FUNCTION session_revocations_notify();
