ALTER TABLE tenants DROP COLUMN jit_email_domains;
