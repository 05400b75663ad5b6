-- Hardening 5: TRUNCATE skips row triggers, which is how the reference's "immutable" audit log was
-- emptied. The runtime roles hold no TRUNCATE privilege; this statement-level trigger also stops
-- the owner from doing it by accident (a superuser can still drop the trigger: out of scope,
-- docs/THREAT_MODEL.md "The owner and the superuser", until the hash chain makes it detectable).
CREATE FUNCTION prevent_audit_log_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'Audit logs are immutable: TRUNCATE is not allowed on audit_logs'
        USING ERRCODE = 'insufficient_privilege';
END
$$;

REVOKE EXECUTE ON FUNCTION prevent_audit_log_truncate() FROM PUBLIC;

CREATE TRIGGER prevent_audit_log_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION prevent_audit_log_truncate();

-- The reference's row trigger function, pinned like ours.
ALTER FUNCTION prevent_audit_log_modification() SET search_path = pg_catalog;
