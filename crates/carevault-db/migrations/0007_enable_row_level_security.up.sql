-- Reference migration 7: row-level security, as the reference wrote it. On its own this protects
-- nothing against the table owner or a superuser; migration 9 forces it and scopes the policies
-- to the runtime role.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY;

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
