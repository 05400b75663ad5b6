-- Hardening 7: one active user per identity-provider subject in a tenant. Authentication maps a
-- token's `sub` to `users.external_idp_id`; with duplicates, a tenant admin could create a second
-- user carrying a colleague's `sub` and silently change who that colleague logs in as.
CREATE UNIQUE INDEX idx_users_tenant_external_idp_active ON users (tenant_id, external_idp_id)
    WHERE external_idp_id IS NOT NULL AND deleted_at IS NULL;
