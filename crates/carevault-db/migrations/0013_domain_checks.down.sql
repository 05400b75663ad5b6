ALTER TABLE documents DROP CONSTRAINT chk_documents_metadata_object;
ALTER TABLE users DROP CONSTRAINT chk_users_role;
ALTER TABLE tenants DROP CONSTRAINT chk_tenants_status;
