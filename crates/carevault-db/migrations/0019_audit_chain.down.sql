-- Back to migration 18: the chain, the sealer's state and role's privileges, and the stamp go.
-- created_at keeps the values the trigger gave (the default applies again from here).
DROP TABLE audit_sealer;
DROP TABLE audit_checkpoints;
DROP FUNCTION audit_checkpoint_matches_chain();
DROP TABLE audit_chain;
DROP FUNCTION audit_chain_append();
DROP FUNCTION refuse_audit_chain_change();
DROP FUNCTION audit_row_hash(bytea, bigint, timestamptz, public.audit_logs);
DROP POLICY audit_log_sealer_select_policy ON audit_logs;
REVOKE ALL ON audit_logs FROM carevault_sealer;
REVOKE USAGE ON SCHEMA public FROM carevault_sealer;
DROP TRIGGER audit_logs_stamp ON audit_logs;
DROP FUNCTION audit_log_stamp();
DROP INDEX idx_audit_logs_xact;
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_hashable_metadata, DROP CONSTRAINT audit_logs_hashable_user_agent,
    DROP CONSTRAINT audit_logs_hashable_created_at;
ALTER TABLE audit_logs DROP COLUMN xact_id;
