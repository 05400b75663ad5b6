-- Hardening 2: row-level security that holds.
--
-- * FORCE: without it the table owner bypasses every policy.
-- * Every policy names its role (TO carevault_app / TO carevault_platform) and has both USING and
--   WITH CHECK, so no write path can create or move a row outside the current tenant.
-- * The tenant is read as (SELECT nullif(current_setting(...), '')::uuid):
--   - nullif: on a connection that ran a tenant transaction before, the setting reads as '' (not
--     NULL) once the transaction ended, and ''::uuid would raise instead of matching nothing;
--   - the sub-select makes PostgreSQL evaluate it once per query (an InitPlan), not once per row.
-- * A RESTRICTIVE guard per table: restrictive policies are AND-ed with the permissive ones, so a
--   permissive policy added later by mistake cannot widen a tenant's access.
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY;

ALTER POLICY tenant_isolation_policy ON tenants TO carevault_app
    USING (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY user_isolation_policy ON users TO carevault_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY document_isolation_policy ON documents TO carevault_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY audit_log_select_policy ON audit_logs TO carevault_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY audit_log_insert_policy ON audit_logs TO carevault_app
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));

CREATE POLICY tenant_guard ON tenants AS RESTRICTIVE FOR ALL TO carevault_app
    USING (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
CREATE POLICY tenant_guard ON users AS RESTRICTIVE FOR ALL TO carevault_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
CREATE POLICY tenant_guard ON documents AS RESTRICTIVE FOR ALL TO carevault_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
CREATE POLICY tenant_guard ON audit_logs AS RESTRICTIVE FOR ALL TO carevault_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));

-- The platform path (tenant administration) sees every tenant, on these two tables only.
CREATE POLICY platform_tenant_policy ON tenants FOR ALL TO carevault_platform
    USING (true) WITH CHECK (true);
CREATE POLICY platform_audit_log_select_policy ON audit_logs FOR SELECT TO carevault_platform
    USING (true);
CREATE POLICY platform_audit_log_insert_policy ON audit_logs FOR INSERT TO carevault_platform
    WITH CHECK (true);
