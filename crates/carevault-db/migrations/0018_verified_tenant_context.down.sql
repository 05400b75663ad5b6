-- Back to the tenant named by a setting any session can write (migration 15).
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
END
$$;
DROP FUNCTION public.carevault_enter_tenant(text, text);
DROP FUNCTION public.carevault_pin_transaction(text);

CREATE OR REPLACE FUNCTION public.carevault_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE SECURITY INVOKER PARALLEL SAFE
    RETURN nullif(current_setting('app.current_tenant_id', true), '')::uuid;

DROP TABLE carevault_private.tenant_context_keys;
DROP SCHEMA carevault_private;
