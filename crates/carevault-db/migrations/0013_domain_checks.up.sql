-- Hardening 6: the database refuses values the domain types refuse, so a row written by any path
-- (a future migration, a DBA's script) stays readable by the application.
-- users.role stays nullable as in the reference (a NULL role is read as `viewer`, the least
-- privilege); CHECK lets NULL pass.
ALTER TABLE tenants ADD CONSTRAINT chk_tenants_status CHECK (status IN ('active', 'suspended', 'trial'));
ALTER TABLE users ADD CONSTRAINT chk_users_role CHECK (role IN ('admin', 'member', 'viewer'));
ALTER TABLE documents ADD CONSTRAINT chk_documents_metadata_object CHECK (jsonb_typeof(metadata) = 'object');
