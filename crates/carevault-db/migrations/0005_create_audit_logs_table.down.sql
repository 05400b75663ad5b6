DROP TABLE audit_logs;
DROP FUNCTION prevent_audit_log_modification();
