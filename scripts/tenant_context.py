"""The verified tenant context for the scripts that speak SQL without the server (pgbench, psql):
a key of their own, added to the database they run on, and the statement that proves a tenant
with it inside the current transaction, computed by the database itself (pgbench and psql cannot
compute an HMAC). The proof is the `t1` form of crates/carevault-db/src/tenant_context.rs: the MAC
covers the fields and the binding `<pid>.<transaction start, microseconds>`.

The key is fixed and public: these scripts run on throwaway databases only (a bench's or the
evidence suite's own data directory). Never add it to a database that holds real data.
"""

KEY_ID = "scripts"
SECRET = bytes(range(0x40, 0x60))  # 32 bytes


def _pad(byte):
    return bytes(b ^ byte for b in SECRET + bytes(64 - len(SECRET))).hex()


def install_sql():
    """Adds the scripts' key (as the owner or a superuser); nothing happens if it is there."""
    return (f"INSERT INTO carevault_private.tenant_context_keys (kid, inner_pad, outer_pad) "
            f"VALUES ('{KEY_ID}', decode('{_pad(0x36)}', 'hex'), decode('{_pad(0x5c)}', 'hex')) "
            f"ON CONFLICT (kid) DO NOTHING;")


def context_sql(role, tenant, user=""):
    """One statement: switch to `role` (None: no switch) and prove `tenant` and `user` for this
    transaction, with lock_timeout as TenantTx sets it."""
    fields = f"'t1.{KEY_ID}.{tenant}.{user}.' || (extract(epoch FROM now())::bigint + 60)"
    mac = (f"encode(sha256(decode('{_pad(0x5c)}', 'hex') || sha256(decode('{_pad(0x36)}', 'hex') || "
           f"convert_to(p.f || '.' || pg_backend_pid() || '.' || (extract(epoch FROM now()) * 1000000)::bigint, "
           f"'UTF8'))), 'hex')")
    switch = f"set_config('role', '{role}', true), " if role else ""
    return (f"SELECT {switch}set_config('app.tenant_context', p.f || '.' || {mac}, true), "
            f"set_config('lock_timeout', '5s', true) FROM (SELECT {fields} AS f) AS p;")
