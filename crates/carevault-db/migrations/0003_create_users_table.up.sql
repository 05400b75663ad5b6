-- Reference migration 3: users.
CREATE TABLE users (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       UUID         NOT NULL,
    email           VARCHAR(255) NOT NULL,
    external_idp_id VARCHAR(255),
    full_name       VARCHAR(255),
    role            VARCHAR(50),
    last_login_at   TIMESTAMPTZ,
    created_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    deleted_at      TIMESTAMPTZ,
    CONSTRAINT fk_users_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE RESTRICT
);

-- Partial: an email can be reused once its user is soft-deleted.
CREATE UNIQUE INDEX idx_users_tenant_email_active ON users (tenant_id, email) WHERE deleted_at IS NULL;
CREATE INDEX idx_users_tenant_created ON users (tenant_id, created_at DESC);
CREATE INDEX idx_users_external_idp ON users (external_idp_id)
    WHERE external_idp_id IS NOT NULL AND deleted_at IS NULL;
