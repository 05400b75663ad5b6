ALTER TABLE audit_logs DROP CONSTRAINT fk_audit_logs_user;
ALTER TABLE audit_logs ADD CONSTRAINT fk_audit_logs_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT;
ALTER TABLE documents DROP CONSTRAINT fk_documents_user;
ALTER TABLE documents ADD CONSTRAINT fk_documents_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT;
ALTER TABLE documents DROP CONSTRAINT uq_documents_tenant_id;
ALTER TABLE users DROP CONSTRAINT uq_users_tenant_id;
