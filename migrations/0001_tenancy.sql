-- 0001_tenancy: tenants, their domains, the application role and the row-level-security
-- convention every tenant-owned table follows.
--
-- Convention (read before adding a tenant table):
--   * The application connects as `edgefront_app` (LOGIN, NOSUPERUSER, NOBYPASSRLS, owns
--     nothing), so Postgres, not application code, enforces tenant isolation.
--   * Each request runs as one transaction that starts with
--         SELECT set_config('app.current_tenant', '<tenant uuid>', true);
--     `true` makes the setting transaction-local, so it cannot leak into another request that
--     reuses the same pooled session.
--   * Every tenant-owned table has a `tenant_id uuid` column (for `tenants` itself: `id`) and:
--         ALTER TABLE t ENABLE ROW LEVEL SECURITY;
--         ALTER TABLE t FORCE ROW LEVEL SECURITY;
--         CREATE POLICY tenant_isolation ON t
--           USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
--           WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);
--     With no tenant set, `current_setting(..., true)` is NULL or '' and NULLIF turns '' into
--     NULL, so the policy matches no row (rather than raising an error): forgetting the tenant
--     fails closed. WITH CHECK makes writes into another tenant fail with 42501.
--   * FORCE applies the policy to the table owner too; superusers still bypass RLS.
--   * The edge must find a tenant from a Host header before it knows the tenant id. That
--     lookup goes through the SECURITY DEFINER functions resolve_tenant_by_slug/_by_domain
--     (functions/00_shared.sql; owned by the migrating superuser, so they bypass RLS), which
--     return only the one matching tenant.
--   * Roles are cluster-wide: the role is created idempotently and without a password; the
--     deployer sets one with `ALTER ROLE edgefront_app PASSWORD '...'`.
--   * Functions, and the triggers that execute them (here: tenants_set_updated_at), are in
--     migrations/functions/, applied after every numbered migration (see migrations/README.md).

-- gen_random_uuid() is built into Postgres 13+, so pgcrypto is not needed.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'edgefront_app') THEN
        CREATE ROLE edgefront_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    ELSE
        -- Another database of this cluster created it; make sure it has not been widened.
        ALTER ROLE edgefront_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO edgefront_app;

CREATE TABLE IF NOT EXISTS public.tenants (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug       text NOT NULL UNIQUE
               CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name       text NOT NULL,
    tier       text NOT NULL DEFAULT 'basic'
               CONSTRAINT tenants_tier_valid CHECK (tier IN ('basic', 'premium', 'enterprise')),
    status     text NOT NULL DEFAULT 'active'
               CONSTRAINT tenants_status_valid CHECK (status IN ('active', 'suspended', 'deleted')),
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.tenant_domains (
    hostname   text PRIMARY KEY
               CONSTRAINT tenant_domains_hostname_lower CHECK (hostname = lower(hostname) AND hostname <> ''),
    tenant_id  uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- For the cascade on tenant deletion and for the RLS predicate.
CREATE INDEX IF NOT EXISTS tenant_domains_tenant_id_idx ON public.tenant_domains (tenant_id);

-- Row-level security, following the convention above.
ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tenants FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.tenants;
CREATE POLICY tenant_isolation ON public.tenants
    USING      (id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

ALTER TABLE public.tenant_domains ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tenant_domains FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.tenant_domains;
CREATE POLICY tenant_isolation ON public.tenant_domains
    USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

-- Tenants and domains are written by the platform (superuser/migrations), only read by the app.
GRANT SELECT ON public.tenants, public.tenant_domains TO edgefront_app;
