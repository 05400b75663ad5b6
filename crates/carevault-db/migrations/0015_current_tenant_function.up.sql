-- Hardening 8: one function names the current tenant, and every policy of carevault_app calls it.
--
-- Until now each of the nine tenant policies repeated the expression
-- (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid); a change of how the
-- tenant is established (a verified context, see docs/THREAT_MODEL.md) now changes this one
-- function. The form, measured in docs/PERFORMANCE.md ("The tenant predicate"):
--
-- * STABLE, never IMMUTABLE: a cached generic plan must not keep the first tenant it saw.
-- * A SQL-standard body (RETURN ...): parsed once, when the function is created, so a session's
--   search_path (a temporary type named `uuid` shadows the real one: pg_temp is searched first
--   for types) cannot change what it means. It is still inlinable where no sub-select is allowed
--   (Citus refuses sub-selects in the policies of distributed tables).
-- * nullif: on a connection that ran a tenant transaction before, the setting reads as '' (not
--   NULL) once that transaction ended, and ''::uuid would raise instead of matching nothing.
-- * The policies call it inside a sub-select, `(SELECT carevault_current_tenant())`: PostgreSQL
--   then evaluates it once per statement (an InitPlan) instead of once per row of a scan.
CREATE FUNCTION carevault_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN nullif(current_setting('app.current_tenant_id', true), '')::uuid;

REVOKE EXECUTE ON FUNCTION carevault_current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION carevault_current_tenant() TO carevault_app;

ALTER POLICY tenant_isolation_policy ON tenants
    USING (id = (SELECT carevault_current_tenant()))
    WITH CHECK (id = (SELECT carevault_current_tenant()));
ALTER POLICY user_isolation_policy ON users
    USING (tenant_id = (SELECT carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT carevault_current_tenant()));
ALTER POLICY document_isolation_policy ON documents
    USING (tenant_id = (SELECT carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT carevault_current_tenant()));
ALTER POLICY audit_log_select_policy ON audit_logs
    USING (tenant_id = (SELECT carevault_current_tenant()));
ALTER POLICY audit_log_insert_policy ON audit_logs
    WITH CHECK (tenant_id = (SELECT carevault_current_tenant()));

ALTER POLICY tenant_guard ON tenants
    USING (id = (SELECT carevault_current_tenant()))
    WITH CHECK (id = (SELECT carevault_current_tenant()));
ALTER POLICY tenant_guard ON users
    USING (tenant_id = (SELECT carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT carevault_current_tenant()));
ALTER POLICY tenant_guard ON documents
    USING (tenant_id = (SELECT carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT carevault_current_tenant()));
ALTER POLICY tenant_guard ON audit_logs
    USING (tenant_id = (SELECT carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT carevault_current_tenant()));
