-- Hardening 2: the email domains whose users a tenant lets sign up just in time
-- (JIT_PROVISIONING=domains; docs/ARCHITECTURE.md, "Authentication"). Set on the platform path
-- only (PUT /api/v1/platform/tenants/{id}/jit-email-domains). EmailDomain::parse validates and
-- lower-cases them; the CHECK states the same form (lower-case labels of letters, digits and
-- inner hyphens, two or more), a bound of 50 and no NULLs, whatever writes the column, so that a
-- row the service reads always parses (an unparsable entry would fail every request of the
-- tenant). An empty list admits nobody.
ALTER TABLE tenants ADD COLUMN jit_email_domains TEXT[] NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD CONSTRAINT chk_tenants_jit_email_domains CHECK (
    cardinality(jit_email_domains) <= 50
    AND array_position(jit_email_domains, NULL) IS NULL
    AND array_to_string(jit_email_domains, ' ')
        ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+( [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+)*)?$'
);
