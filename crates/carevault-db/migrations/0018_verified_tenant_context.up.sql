-- Issue 12: the tenant context the database verifies (docs/THREAT_MODEL.md, "A tenant context the
-- database verifies").
--
-- Until now the policies trusted the setting app.current_tenant_id, which any session of the
-- runtime login can set to any tenant. From here, carevault_current_tenant() returns a tenant only
-- when the setting app.tenant_context holds a proof made with a key the database holds in a table
-- that no runtime role can read:
--
--   <kind>.<kid>.<tenant uuid>.<user uuid or empty>.<expires, unix seconds>.<mac, 64 hex>
--
-- mac = HMAC-SHA256(key, "<kind>.<kid>.<tenant>.<user>.<expires>.<binding>"), where the binding is
-- read here, from the session running the statement, and never travels in the proof:
--   c1: "<backend pid>.<app.connection_nonce>"  (this connection: the pool sets a random nonce on
--       each connection it opens, as a bind parameter, so no other session can read it)
--   t1: "<backend pid>.<transaction start, unix microseconds>"  (this transaction: behind a
--       transaction pooler, where other clients share server connections)
-- A proof read from pg_stat_activity or a log is therefore useless on any other connection (c1)
-- or in any other transaction (t1), and useless once expired.
CREATE SCHEMA carevault_private;
REVOKE ALL ON SCHEMA carevault_private FROM PUBLIC;

-- The keys: HMAC's inner and outer pads (the key, zero-padded to SHA-256's 64-byte block, XOR
-- 0x36 and 0x5c), so that verifying costs two SHA-256 computations and nothing else. Only the
-- owner reads or writes them (`carevault context-key`); a key with `not_after` set (the short-lived
-- keys of owner-run commands) stops verifying then.
CREATE TABLE carevault_private.tenant_context_keys (
    kid text PRIMARY KEY CHECK (kid ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64),
    added_at timestamptz NOT NULL DEFAULT now(),
    not_after timestamptz
);
REVOKE ALL ON carevault_private.tenant_context_keys FROM PUBLIC;

-- The verifier. Why each attribute:
-- * SECURITY DEFINER: it reads the key table, which the caller cannot. search_path pinned, with
--   pg_temp last: otherwise a session's temporary objects would be searched first for tables and
--   types (PostgreSQL, "Writing SECURITY DEFINER Functions Safely").
-- * plpgsql, not SQL: its plans are cached per session (a SQL-language body was ~3x slower per call).
-- * STABLE: the policies call it as (SELECT carevault_current_tenant()), an InitPlan evaluated
--   once per statement, not per row.
-- * PARALLEL RESTRICTED: in a parallel worker pg_backend_pid() is the worker's, not the session's.
-- * Nothing in it raises on a proof a session made up: every shape check comes before the first
--   cast, and the fields are cast only once the MAC has verified (a holder of the key made them).
CREATE OR REPLACE FUNCTION public.carevault_current_tenant() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    proof text := current_setting('app.tenant_context', true);
    part text[];
    pads record;
    binding text;
BEGIN
    IF proof IS NULL OR length(proof) > 200 THEN
        RETURN NULL;
    END IF;
    part := string_to_array(proof, '.');
    IF cardinality(part) <> 6 OR part[1] NOT IN ('c1', 't1') THEN
        RETURN NULL;
    END IF;
    SELECT k.inner_pad, k.outer_pad INTO pads
      FROM carevault_private.tenant_context_keys AS k
     WHERE k.kid = part[2] AND (k.not_after IS NULL OR k.not_after > now());
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF part[1] = 't1' THEN
        binding := pg_backend_pid() || '.' || (extract(epoch FROM now()) * 1000000)::bigint;
    ELSE
        binding := pg_backend_pid() || '.' || current_setting('app.connection_nonce', true);
        IF binding !~ '^[0-9]+\.[0-9a-f]{32}$' THEN
            RETURN NULL;
        END IF;
    END IF;
    IF NOT coalesce(part[6] = encode(sha256(pads.outer_pad || sha256(pads.inner_pad
            || convert_to(array_to_string(part[1:5], '.') || '.' || binding, 'UTF8'))), 'hex'), false) THEN
        RETURN NULL;
    END IF;
    -- Valid for transactions that start before it expires: a long import is not cut short.
    IF part[5]::bigint < extract(epoch FROM now()) THEN
        RETURN NULL;
    END IF;
    RETURN part[3]::uuid;
END
$$;

-- What every transaction of the service pins for itself, transaction-locally, whatever the
-- session's defaults say: defaults a login role stores for itself (ALTER ROLE carevault_api SET
-- statement_timeout = 1, synchronous_commit = off, ...) need no privilege, and behind a
-- transaction pooler another client of the same server connection can leave session settings
-- behind. The transaction's isolation level and read-write mode are pinned by its BEGIN.
-- pg_temp last in search_path: no temporary object is ever found before ours (and since this
-- migration no runtime role may create one).
CREATE FUNCTION public.carevault_pin_transaction(timeout text) RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_catalog.set_config('lock_timeout', '5s', true);
    PERFORM pg_catalog.set_config('statement_timeout', timeout, true);
    PERFORM pg_catalog.set_config('search_path', 'public, pg_temp', true);
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    PERFORM pg_catalog.set_config('row_security', 'on', true);
END
$$;
REVOKE EXECUTE ON FUNCTION public.carevault_pin_transaction(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.carevault_pin_transaction(text) TO carevault_api, carevault_ops;

-- The first statement of every tenant transaction: the pinned settings, the switch to
-- carevault_app and the proof, all transaction-local; then a check that the database accepts the
-- proof, so that a missing key, clocks that disagree or a proof bound to another connection fail
-- the request loudly instead of showing an empty tenant. SECURITY INVOKER and no SET clause (a
-- SET clause would undo the search_path pinned above at the function's exit): every name in it
-- is schema-qualified, and it does nothing its caller could not do.
CREATE FUNCTION public.carevault_enter_tenant(proof text, timeout text) RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM public.carevault_pin_transaction(timeout);
    PERFORM pg_catalog.set_config('role', 'carevault_app', true);
    PERFORM pg_catalog.set_config('app.tenant_context', proof, true);
    IF public.carevault_current_tenant() IS NULL THEN
        RAISE EXCEPTION 'the database does not accept this tenant context'
            USING ERRCODE = 'CV001',
                  HINT = 'Is TENANT_CONTEXT_KEY added to the database (carevault context-key add), and do the clocks agree?';
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION public.carevault_enter_tenant(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.carevault_enter_tenant(text, text) TO carevault_api;

-- No temporary objects for anyone but the owner: a temporary table, type, cast or function lives
-- as long as its server connection, and pg_temp is searched first for tables and types. Behind a
-- transaction pooler, or from SQL injected into one request, a session could leave a temporary
-- `audit_logs` with a trigger, or a cast to `inet`, that the next transaction on that server
-- connection (another tenant's, with its proof set) would run (found by an attacker review).
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
