-- Hardening 1: privileges of the two runtime roles, exactly as docs/ARCHITECTURE.md "Roles". The roles themselves
-- are cluster-wide and created by the bootstrap (sql/bootstrap.sql), never by a migration.
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname IN ('carevault_app', 'carevault_platform')) <> 2 THEN
        RAISE EXCEPTION 'the roles carevault_app and carevault_platform do not exist'
            USING HINT = 'ask a superuser to run the bootstrap SQL (`carevault migrate bootstrap-sql`)';
    END IF;
END
$$;

-- Nothing through PUBLIC: PostgreSQL grants no table privileges to PUBLIC by default, but a DBA's
-- default privileges might have; and PUBLIC may hold CREATE on schema public in databases created
-- before PostgreSQL 15.
REVOKE ALL ON tenants, users, documents, audit_logs FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- Trigger functions fire without EXECUTE; nobody needs to call them directly.
REVOKE EXECUTE ON FUNCTION prevent_audit_log_modification() FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO carevault_app, carevault_platform;

GRANT SELECT ON tenants TO carevault_app;
GRANT SELECT, INSERT, UPDATE ON users, documents TO carevault_app;
-- INSERT on audit_logs excludes id and created_at: their defaults (a random id, the database
-- clock) always apply, so no session can backdate a row into the middle of the history.
GRANT SELECT ON audit_logs TO carevault_app;
GRANT INSERT (tenant_id, user_id, action, resource_type, resource_id, ip_address, user_agent, metadata)
    ON audit_logs TO carevault_app;
-- Readiness checks compare the applied migrations with the binary's.
GRANT SELECT ON _sqlx_migrations TO carevault_app;

GRANT SELECT, INSERT, UPDATE ON tenants TO carevault_platform;
GRANT SELECT ON audit_logs TO carevault_platform;
GRANT INSERT (tenant_id, user_id, action, resource_type, resource_id, ip_address, user_agent, metadata)
    ON audit_logs TO carevault_platform;
