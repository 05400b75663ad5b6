-- Search 1: no shared vector graph; embeddings stored inline.
--
-- * The HNSW index of migration 6 held every tenant's vectors in one graph. A search walked other
--   tenants' vectors and filtered them out afterwards: too few results for a small tenant, and a
--   walk whose length told one tenant where another tenant's documents lie (docs/THREAT_MODEL.md).
--   It is replaced by one partial HNSW index per large tenant, created and dropped by
--   `carevault search reconcile` on the owner path (docs/ARCHITECTURE.md, "Vector search"); every
--   other tenant is searched exactly.
-- * A 1024-dimension vector is 4 KiB, above the 2 KiB TOAST threshold, so with the default
--   EXTENDED storage every vector lived out of line and an exact scan fetched each one from the
--   TOAST table. MAIN keeps it in the row (one document per 8 KiB page), which makes the exact scan
--   about three times faster (docs/PERFORMANCE.md, "Search"). It applies to rows written from now
--   on; rows already stored move in when rewritten (VACUUM FULL documents, or any update).
DROP INDEX idx_documents_embedding_hnsw;
ALTER TABLE documents ALTER COLUMN embedding_vector SET STORAGE MAIN;
