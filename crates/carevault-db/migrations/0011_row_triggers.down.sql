DROP TRIGGER documents_set_updated_at ON documents;
DROP TRIGGER users_set_updated_at ON users;
DROP TRIGGER tenants_set_updated_at ON tenants;
DROP TRIGGER documents_keys_immutable ON documents;
DROP TRIGGER users_keys_immutable ON users;
DROP TRIGGER tenants_keys_immutable ON tenants;
DROP FUNCTION set_updated_at();
DROP FUNCTION prevent_tenant_key_change();
DROP FUNCTION prevent_key_change();
