-- Hardening 4: keys are immutable and updated_at is kept by the database, not by the application.
--
-- WITH CHECK already refuses moving a row to another tenant; the trigger also refuses changing
-- tenant_id or id at all, for every role (the owner and the platform path included), with an
-- error that says so. search_path is pinned so a session cannot shadow what the functions call.
CREATE FUNCTION prevent_key_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION '%.id is immutable', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION prevent_tenant_key_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        RAISE EXCEPTION '%.tenant_id is immutable', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION '%.id is immutable', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

REVOKE EXECUTE ON FUNCTION prevent_key_change(), prevent_tenant_key_change(), set_updated_at() FROM PUBLIC;

CREATE TRIGGER tenants_keys_immutable BEFORE UPDATE ON tenants FOR EACH ROW EXECUTE FUNCTION prevent_key_change();
CREATE TRIGGER users_keys_immutable BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION prevent_tenant_key_change();
CREATE TRIGGER documents_keys_immutable BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION prevent_tenant_key_change();

CREATE TRIGGER tenants_set_updated_at BEFORE UPDATE ON tenants FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER documents_set_updated_at BEFORE UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION set_updated_at();
