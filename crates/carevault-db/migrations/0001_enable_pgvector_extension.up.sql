-- Reference migration 1: pgvector. CREATE EXTENSION needs a superuser (vector's control file is
-- not `trusted`); the bootstrap (sql/bootstrap.sql) creates it when `migrate up` has the rights,
-- and IF NOT EXISTS makes this a no-op for a non-superuser owner once a DBA has run it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'vector') THEN
        RAISE EXCEPTION 'pgvector is not installed on this PostgreSQL server'
            USING HINT = 'install pgvector >= 0.8 (the embedded default ships it), or point DATABASE_URL at a server that has it';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'vector')
       AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'CREATE EXTENSION vector needs a superuser'
            USING HINT = 'ask a superuser to run the bootstrap SQL (`carevault migrate bootstrap-sql`) in this database';
    END IF;
END
$$;

CREATE EXTENSION IF NOT EXISTS vector;
