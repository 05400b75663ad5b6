ALTER FUNCTION prevent_audit_log_modification() RESET search_path;
DROP TRIGGER prevent_audit_log_truncate ON audit_logs;
DROP FUNCTION prevent_audit_log_truncate();
