-- carevault bootstrap: what the migrations cannot do as a non-superuser owner.
--
-- Run it as a superuser in every database carevault uses (roles are cluster-wide, the extension
-- is per database). `carevault migrate up` runs it itself when it connects as a superuser.
-- Idempotent, and safe when several sessions run it at once, in one database or in several.
-- It never drops anything; passwords for the two login roles are yours to set:
--   ALTER ROLE carevault_api PASSWORD '...';  ALTER ROLE carevault_ops PASSWORD '...';
BEGIN;

-- Serialise concurrent bootstraps across the whole cluster: pg_authid is a shared catalog, so a
-- lock on it is visible from every database (an advisory lock is per database). SHARE ROW
-- EXCLUSIVE conflicts with itself and with CREATE/ALTER ROLE, not with logins reading pg_authid.
LOCK TABLE pg_catalog.pg_authid IN SHARE ROW EXCLUSIVE MODE;

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['carevault_app', 'carevault_platform', 'carevault_sealer'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
        -- Re-assert the attributes even when the role already existed.
        EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT', name);
    END LOOP;
    FOREACH name IN ARRAY ARRAY['carevault_api', 'carevault_ops'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', name);
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT', name);
    END LOOP;
END
$$;

-- The login roles can switch to their runtime role per transaction (SET TRUE) but inherit none of
-- its privileges (INHERIT FALSE): outside a transaction that switched role they can do nothing.
GRANT carevault_app TO carevault_api WITH INHERIT FALSE, SET TRUE;
GRANT carevault_platform TO carevault_ops WITH INHERIT FALSE, SET TRUE;
-- The sealer of the audit chain runs on the platform login's connections, as its own role that
-- can append chain data and nothing else (docs/ARCHITECTURE.md, "The audit chain").
GRANT carevault_sealer TO carevault_ops WITH INHERIT FALSE, SET TRUE;

-- No session of the two logins keeps a transaction open and idle for more than 10 s (its locks
-- and its snapshot would hold up everyone else; requests read their body before they open one). The pools also send it at connect time;
-- this role default is what remains when a pooler drops startup parameters. The security manifest
-- states the value (`manifest::IDLE_IN_TRANSACTION_TIMEOUT`) and the doctor compares.
ALTER ROLE carevault_api SET idle_in_transaction_session_timeout = '10s';
ALTER ROLE carevault_ops SET idle_in_transaction_session_timeout = '10s';

-- Refuse memberships we did not make: a runtime or login role that is also a member of another
-- role (pg_read_all_data, the owner, ...) or holds ADMIN on a grant would escape its privileges,
-- and re-running this script would not notice.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_auth_members a
        JOIN pg_catalog.pg_roles m ON m.oid = a.member
        JOIN pg_catalog.pg_roles r ON r.oid = a.roleid
        WHERE m.rolname IN ('carevault_app', 'carevault_platform', 'carevault_sealer', 'carevault_api', 'carevault_ops')
          AND (a.admin_option
               OR (m.rolname, r.rolname) NOT IN (('carevault_api', 'carevault_app'), ('carevault_ops', 'carevault_platform'),
                                                 ('carevault_ops', 'carevault_sealer')))
    ) THEN
        RAISE EXCEPTION 'a carevault role has a membership it must not have'
            USING HINT = 'SELECT * FROM pg_auth_members shows it; revoke it, then run the bootstrap again';
    END IF;
END
$$;

CREATE EXTENSION IF NOT EXISTS vector;

COMMIT;
