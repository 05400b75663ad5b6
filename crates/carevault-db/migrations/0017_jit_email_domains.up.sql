-- Hardening 2: the email domains whose users a tenant lets sign up just in time
-- (JIT_PROVISIONING=domains; docs/ARCHITECTURE.md, "Authentication"). Set on the platform path
-- only (PUT /api/v1/platform/tenants/{id}/jit-email-domains). The values are validated and
-- lower-cased by EmailDomain::parse; the CHECK keeps the list bounded and free of NULLs whatever
-- writes it. An empty list admits nobody.
ALTER TABLE tenants ADD COLUMN jit_email_domains TEXT[] NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD CONSTRAINT chk_tenants_jit_email_domains
    CHECK (cardinality(jit_email_domains) <= 50 AND array_position(jit_email_domains, NULL) IS NULL);
