-- Reference migration 4: documents, with a 1024-dimension embedding.
CREATE TABLE documents (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        UUID          NOT NULL,
    user_id          UUID          NOT NULL,
    s3_key           VARCHAR(1024) NOT NULL,
    s3_bucket        VARCHAR(255)  NOT NULL,
    filename         VARCHAR(512)  NOT NULL,
    content_type     VARCHAR(127),
    size_bytes       BIGINT,
    status           VARCHAR(50)   NOT NULL DEFAULT 'processing',
    metadata         JSONB         DEFAULT '{}',
    embedding_vector VECTOR(1024),
    created_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    deleted_at       TIMESTAMPTZ,
    CONSTRAINT fk_documents_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE RESTRICT,
    CONSTRAINT fk_documents_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT,
    CONSTRAINT chk_documents_status CHECK (status IN ('processing', 'completed', 'failed'))
);

CREATE INDEX idx_documents_tenant_created ON documents (tenant_id, created_at DESC);
CREATE INDEX idx_documents_tenant_user ON documents (tenant_id, user_id, created_at DESC);
CREATE INDEX idx_documents_tenant_status ON documents (tenant_id, status) WHERE deleted_at IS NULL;
CREATE INDEX idx_documents_metadata_gin ON documents USING gin (metadata);
