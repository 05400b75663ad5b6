-- Issue 11: order, time, a hash chain per tenant and its signed checkpoints (docs/AUDIT_FORMAT.md
-- is the format, docs/ARCHITECTURE.md "The audit chain" the design).
--
-- * created_at is the clock at insertion (clock_timestamp()), set by a trigger for every inserter:
--   a transaction held open no longer dates its rows to its start.
-- * Rows are chained after they commit, by the sealer (`carevault audit seal`, or the service's
--   own task), in an append-only table of their own: audit rows stay immutable, and a tenant's
--   requests never wait on one lock held until commit. The sealer inserts (tenant_id, audit_id)
--   only; the trigger of audit_chain fills the sequence number, the previous hash and the hash from
--   the stored row, so the sealer's role can append and nothing else: no gaps, no insertion into
--   the sealed past (the primary key refuses a taken number), no hash of its own making.
-- * xact_id (the inserting transaction's id) tells the sealer which rows may still appear: the
--   rows of a transaction that had finished when its last pass took its snapshot were visible to
--   that pass; only those of transactions running then, or started since, may still come.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'carevault_sealer') THEN
        RAISE EXCEPTION 'the role carevault_sealer does not exist'
            USING HINT = 'ask a superuser to run the bootstrap SQL again (`carevault migrate bootstrap-sql`)';
    END IF;
END
$$;

-- 1. Time and transaction of every audit row, whoever inserts it. The column is added with a
-- constant default (no table rewrite: earlier rows read '0', sealed on the first pass), and the
-- default is then dropped so that only the trigger fills it.
ALTER TABLE audit_logs ADD COLUMN xact_id xid8 NOT NULL DEFAULT '0';
ALTER TABLE audit_logs ALTER COLUMN xact_id DROP DEFAULT;

CREATE FUNCTION audit_log_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.created_at := clock_timestamp();
    NEW.xact_id := pg_current_xact_id();
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION audit_log_stamp() FROM PUBLIC;
CREATE TRIGGER audit_logs_stamp BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_log_stamp();

-- The sealer's scan: rows of the transactions its last snapshot did not see finished.
CREATE INDEX idx_audit_logs_xact ON audit_logs (xact_id);

-- Every hashed value is bounded, so that no row can make the hash fail: a jsonb whose text is far
-- larger than its storage, a gigabyte user agent, or a time without a place in microseconds since
-- 1970 would stop the sealer for every tenant. CHECKs hold for every inserter, triggers on or off.
ALTER TABLE audit_logs
    ADD CONSTRAINT audit_logs_hashable_metadata CHECK (octet_length(metadata::text) <= 1048576),
    ADD CONSTRAINT audit_logs_hashable_user_agent CHECK (octet_length(user_agent) <= 4096),
    ADD CONSTRAINT audit_logs_hashable_created_at
        CHECK (created_at >= '1970-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00');

-- 2. The chain. One row per sealed audit row; tenant_id leads every key, as Citus needs.
CREATE TABLE audit_chain (
    tenant_id uuid NOT NULL,
    seq bigint NOT NULL CHECK (seq > 0),
    audit_id uuid NOT NULL,
    prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    sealed_at timestamptz NOT NULL,
    CONSTRAINT audit_chain_pkey PRIMARY KEY (tenant_id, seq),
    CONSTRAINT audit_chain_audit_id_key UNIQUE (tenant_id, audit_id),
    CONSTRAINT fk_audit_chain_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE RESTRICT
);
REVOKE ALL ON audit_chain FROM PUBLIC;

-- The canonical hash of an audit row at a place in its tenant's chain (docs/AUDIT_FORMAT.md):
-- SHA-256 of the previous hash followed by each field as 0x00 (NULL) or 0x01, its length as a
-- 32-bit big-endian integer, its bytes. decode() rather than '\x..' literals, which a session with
-- standard_conforming_strings off would read otherwise.
CREATE FUNCTION audit_row_hash(previous bytea, seq bigint, sealed_at timestamptz, entry public.audit_logs)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT sha256(previous || string_agg(
               CASE WHEN field IS NULL THEN decode('00', 'hex')
                    ELSE decode('01', 'hex') || int4send(octet_length(field)) || field END,
               ''::bytea ORDER BY position))
    FROM unnest(ARRAY[
        convert_to('carevault.audit.v1', 'UTF8'),
        int8send(seq),
        int8send((extract(epoch FROM sealed_at) * 1000000)::bigint),
        uuid_send(entry.tenant_id),
        uuid_send(entry.id),
        int8send((extract(epoch FROM entry.created_at) * 1000000)::bigint),
        uuid_send(entry.user_id),
        convert_to(entry.action, 'UTF8'),
        convert_to(entry.resource_type, 'UTF8'),
        uuid_send(entry.resource_id),
        convert_to(entry.ip_address::text, 'UTF8'),
        convert_to(entry.user_agent, 'UTF8'),
        convert_to(entry.metadata::text, 'UTF8')
    ]) WITH ORDINALITY AS f(field, position)
$$;
REVOKE EXECUTE ON FUNCTION audit_row_hash(bytea, bigint, timestamptz, public.audit_logs) FROM PUBLIC;
-- The chain's trigger runs as the inserter: the sealer (the owner has every right anyway).
GRANT EXECUTE ON FUNCTION audit_row_hash(bytea, bigint, timestamptz, public.audit_logs) TO carevault_sealer;

-- Appends at the tenant's head, whatever the inserter wrote in seq, prev_hash, hash and sealed_at.
-- Two concurrent appends to one tenant compute the same seq: the primary key refuses the second.
CREATE FUNCTION audit_chain_append() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    entry public.audit_logs;
    head public.audit_chain;
BEGIN
    SELECT * INTO entry FROM public.audit_logs WHERE id = NEW.audit_id AND tenant_id = NEW.tenant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no audit row % in tenant %', NEW.audit_id, NEW.tenant_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT * INTO head FROM public.audit_chain WHERE tenant_id = NEW.tenant_id ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(head.seq, 0) + 1;
    NEW.prev_hash := coalesce(head.hash, decode(repeat('00', 32), 'hex'));
    NEW.sealed_at := clock_timestamp();
    NEW.hash := public.audit_row_hash(NEW.prev_hash, NEW.seq, NEW.sealed_at, entry);
    RETURN NEW;
END
$$;

-- The chain is append-only for everyone, as the audit log is.
CREATE FUNCTION refuse_audit_chain_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'the audit chain is append-only: % is not allowed on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
REVOKE EXECUTE ON FUNCTION audit_chain_append(), refuse_audit_chain_change() FROM PUBLIC;

CREATE TRIGGER audit_chain_append BEFORE INSERT ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_chain_append();
CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain FOR EACH ROW EXECUTE FUNCTION refuse_audit_chain_change();
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain FOR EACH ROW EXECUTE FUNCTION refuse_audit_chain_change();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_chain_change();

-- 3. Signed checkpoints: (tenant, seq, head hash, time) signed with Ed25519 by the service's
-- AUDIT_SIGNING_KEY, a key the database never holds, and also written to a sink outside the
-- database (docs/AUDIT_FORMAT.md). The trigger refuses a checkpoint of a head the chain does not
-- hold; the signature is for the verifier to check.
CREATE TABLE audit_checkpoints (
    tenant_id uuid NOT NULL,
    seq bigint NOT NULL CHECK (seq > 0),
    head_hash bytea NOT NULL CHECK (octet_length(head_hash) = 32),
    signed_at timestamptz NOT NULL,
    key_id text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
    signature bytea NOT NULL CHECK (octet_length(signature) = 64),
    CONSTRAINT audit_checkpoints_pkey PRIMARY KEY (tenant_id, seq),
    CONSTRAINT fk_audit_checkpoints_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE RESTRICT
);
REVOKE ALL ON audit_checkpoints FROM PUBLIC;

CREATE FUNCTION audit_checkpoint_matches_chain() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.audit_chain
                   WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq AND hash = NEW.head_hash) THEN
        RAISE EXCEPTION 'tenant %''s chain holds no entry % with this hash', NEW.tenant_id, NEW.seq
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION audit_checkpoint_matches_chain() FROM PUBLIC;
CREATE TRIGGER audit_checkpoints_match BEFORE INSERT ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_matches_chain();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_chain_change();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_chain_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_chain_change();

-- 4. The sealer's state: one row, locked by the pass that runs (one sealer at a time across
-- replicas), holding the snapshot of the last complete pass: the rows of every transaction it
-- saw finished are sealed.
CREATE TABLE audit_sealer (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    watermark pg_snapshot NOT NULL
);
REVOKE ALL ON audit_sealer FROM PUBLIC;
-- Every row there is now is chained below (step 5), and none can be added meanwhile (ALTER TABLE
-- above holds audit_logs' ACCESS EXCLUSIVE lock until this migration commits): the first pass
-- starts at this transaction's snapshot.
INSERT INTO audit_sealer (watermark) SELECT pg_current_snapshot();

-- 5. Privileges and policies. The tenant reads its chain; the sealer reads every audit row and
-- the chain, appends (tenant_id, audit_id), and moves its watermark.
ALTER TABLE audit_chain ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_chain_isolation_policy ON audit_chain FOR ALL TO carevault_app
    USING (tenant_id = (SELECT public.carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT public.carevault_current_tenant()));
CREATE POLICY tenant_guard ON audit_chain AS RESTRICTIVE FOR ALL TO carevault_app
    USING (tenant_id = (SELECT public.carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT public.carevault_current_tenant()));
CREATE POLICY audit_chain_sealer_select_policy ON audit_chain FOR SELECT TO carevault_sealer USING (true);
CREATE POLICY audit_chain_sealer_insert_policy ON audit_chain FOR INSERT TO carevault_sealer WITH CHECK (true);
CREATE POLICY audit_log_sealer_select_policy ON audit_logs FOR SELECT TO carevault_sealer USING (true);
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_checkpoints_isolation_policy ON audit_checkpoints FOR ALL TO carevault_app
    USING (tenant_id = (SELECT public.carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT public.carevault_current_tenant()));
CREATE POLICY tenant_guard ON audit_checkpoints AS RESTRICTIVE FOR ALL TO carevault_app
    USING (tenant_id = (SELECT public.carevault_current_tenant()))
    WITH CHECK (tenant_id = (SELECT public.carevault_current_tenant()));
CREATE POLICY audit_checkpoints_sealer_select_policy ON audit_checkpoints FOR SELECT TO carevault_sealer USING (true);
CREATE POLICY audit_checkpoints_sealer_insert_policy ON audit_checkpoints FOR INSERT TO carevault_sealer WITH CHECK (true);

GRANT SELECT ON audit_chain, audit_checkpoints TO carevault_app;
GRANT SELECT, INSERT ON audit_checkpoints TO carevault_sealer;
GRANT USAGE ON SCHEMA public TO carevault_sealer;
GRANT SELECT ON audit_logs, audit_chain TO carevault_sealer;
GRANT INSERT (tenant_id, audit_id) ON audit_chain TO carevault_sealer;
GRANT SELECT, UPDATE (watermark) ON audit_sealer TO carevault_sealer;

-- 6. The rows already there, chained in (created_at, id) order. A non-superuser owner is subject
-- to the forced policies and has none, so it reads audit_logs unforced for this one statement and
-- forces audit_chain after it (all in this transaction, which holds both tables' locks: no other
-- session sees either unforced).
ALTER TABLE audit_logs NO FORCE ROW LEVEL SECURITY;
INSERT INTO audit_chain (tenant_id, audit_id)
SELECT tenant_id, id FROM audit_logs ORDER BY tenant_id, created_at, id;
ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_chain FORCE ROW LEVEL SECURITY;
