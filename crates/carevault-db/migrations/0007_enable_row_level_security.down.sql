DROP POLICY audit_log_insert_policy ON audit_logs;
DROP POLICY audit_log_select_policy ON audit_logs;
DROP POLICY document_isolation_policy ON documents;
DROP POLICY user_isolation_policy ON users;
DROP POLICY tenant_isolation_policy ON tenants;
ALTER TABLE audit_logs DISABLE ROW LEVEL SECURITY;
ALTER TABLE documents DISABLE ROW LEVEL SECURITY;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;
ALTER TABLE tenants DISABLE ROW LEVEL SECURITY;
