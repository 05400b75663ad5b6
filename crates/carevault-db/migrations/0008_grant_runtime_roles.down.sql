REVOKE ALL ON tenants, users, documents, audit_logs, _sqlx_migrations FROM carevault_app, carevault_platform;
REVOKE USAGE ON SCHEMA public FROM carevault_app, carevault_platform;
GRANT EXECUTE ON FUNCTION prevent_audit_log_modification() TO PUBLIC;
-- REVOKE CREATE ON SCHEMA public FROM PUBLIC is not undone: it is PostgreSQL's default since 15.
