-- Back to the policies of migration 9, each with the tenant expression written out.
ALTER POLICY tenant_isolation_policy ON tenants
    USING (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY user_isolation_policy ON users
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY document_isolation_policy ON documents
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY audit_log_select_policy ON audit_logs
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY audit_log_insert_policy ON audit_logs
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));

ALTER POLICY tenant_guard ON tenants
    USING (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY tenant_guard ON users
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY tenant_guard ON documents
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER POLICY tenant_guard ON audit_logs
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid));

DROP FUNCTION carevault_current_tenant();
