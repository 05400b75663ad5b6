-- Reference migration 6: the HNSW index for cosine distance (`<=>`). Partial, so deleted rows and
-- rows without an embedding never enter the graph.
CREATE INDEX idx_documents_embedding_hnsw ON documents
    USING hnsw (embedding_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE embedding_vector IS NOT NULL AND deleted_at IS NULL;
