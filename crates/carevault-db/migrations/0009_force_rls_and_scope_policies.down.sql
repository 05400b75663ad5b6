DROP POLICY platform_audit_log_insert_policy ON audit_logs;
DROP POLICY platform_audit_log_select_policy ON audit_logs;
DROP POLICY platform_tenant_policy ON tenants;
DROP POLICY tenant_guard ON audit_logs;
DROP POLICY tenant_guard ON documents;
DROP POLICY tenant_guard ON users;
DROP POLICY tenant_guard ON tenants;

-- Back to the reference policies of migration 7 (ALTER POLICY cannot drop a WITH CHECK).
DROP POLICY tenant_isolation_policy ON tenants;
DROP POLICY user_isolation_policy ON users;
DROP POLICY document_isolation_policy ON documents;
DROP POLICY audit_log_select_policy ON audit_logs;
DROP POLICY audit_log_insert_policy ON audit_logs;
CREATE POLICY tenant_isolation_policy ON tenants
    USING (id = current_setting('app.current_tenant_id', true)::uuid);
CREATE POLICY user_isolation_policy ON users FOR ALL
    USING (tenant_id = current_setting('app.current_tenant_id', true)::uuid);
CREATE POLICY document_isolation_policy ON documents FOR ALL
    USING (tenant_id = current_setting('app.current_tenant_id', true)::uuid);
CREATE POLICY audit_log_select_policy ON audit_logs FOR SELECT
    USING (tenant_id = current_setting('app.current_tenant_id', true)::uuid);
CREATE POLICY audit_log_insert_policy ON audit_logs FOR INSERT
    WITH CHECK (tenant_id = current_setting('app.current_tenant_id', true)::uuid);

ALTER TABLE audit_logs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE documents NO FORCE ROW LEVEL SECURITY;
ALTER TABLE users NO FORCE ROW LEVEL SECURITY;
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;
