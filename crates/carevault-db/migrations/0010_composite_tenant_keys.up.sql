-- Hardening 3: no row can reference another tenant's row.
--
-- Foreign-key checks run as the table owner and ignore RLS, so with the reference's single-column
-- keys a tenant-A document could name a tenant-B user. Children now reference (tenant_id, id), and
-- their own tenant_id is pinned to the current tenant by WITH CHECK: the parent must be in the
-- same tenant. audit_logs.user_id stays nullable (platform actions): MATCH SIMPLE skips the check
-- for a NULL user_id.
ALTER TABLE users ADD CONSTRAINT uq_users_tenant_id UNIQUE (tenant_id, id);
ALTER TABLE documents ADD CONSTRAINT uq_documents_tenant_id UNIQUE (tenant_id, id);

ALTER TABLE documents DROP CONSTRAINT fk_documents_user;
ALTER TABLE documents ADD CONSTRAINT fk_documents_user
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE RESTRICT;

ALTER TABLE audit_logs DROP CONSTRAINT fk_audit_logs_user;
ALTER TABLE audit_logs ADD CONSTRAINT fk_audit_logs_user
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE RESTRICT;
