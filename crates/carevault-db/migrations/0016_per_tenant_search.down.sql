-- Back to one shared HNSW index; the per-tenant indexes (named by `carevault search reconcile`)
-- go with this design.
DO $$
DECLARE
    index_name text;
BEGIN
    FOR index_name IN
        SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'public.documents'::regclass AND c.relname LIKE 'idx\_documents\_embedding\_t\_%'
    LOOP
        EXECUTE format('DROP INDEX public.%I', index_name);
    END LOOP;
END
$$;
ALTER TABLE documents ALTER COLUMN embedding_vector SET STORAGE EXTENDED;
CREATE INDEX idx_documents_embedding_hnsw ON documents
    USING hnsw (embedding_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE embedding_vector IS NOT NULL AND deleted_at IS NULL;
