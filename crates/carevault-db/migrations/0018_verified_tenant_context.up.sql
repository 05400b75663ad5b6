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
--   t1: "<backend pid>.<transaction start, unix microseconds>"  (this transaction; the service's
--       TenantTx, also behind a transaction pooler, where other clients share server sessions)
--   c1: "<backend pid>.<backend start, unix microseconds>"  (this session, for the whole of it: a
--       tool's session outside transactions; the function's owner must be able to see the
--       session's start: a superuser, or a member of pg_read_all_stats)
-- A proof read from pg_stat_activity or a log is therefore useless in any other transaction (t1)
-- or on any other connection (c1), and useless once expired.
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
        SELECT a.pid || '.' || (extract(epoch FROM a.backend_start) * 1000000)::bigint INTO binding
          FROM pg_stat_get_activity(pg_backend_pid()) AS a;
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
