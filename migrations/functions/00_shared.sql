-- functions/00_shared: helpers every capability uses, and the tenancy functions (0001).
--
-- A repeatable file (see migrations/README.md): it holds the current definition of its
-- functions and is re-applied, in one transaction, whenever its text changes — so every
-- statement here must be safe to run again (CREATE OR REPLACE, DROP ... IF EXISTS + CREATE,
-- GRANT/REVOKE). It runs after every numbered migration, so all tables exist.

-- The current tenant, from the transaction's setting (NULL when unset).
CREATE OR REPLACE FUNCTION public.current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid
$$;

GRANT EXECUTE ON FUNCTION public.current_tenant_id() TO edgefront_app;

-- Timestamps as the API shows them (RFC 3339, UTC, microseconds); cursors cast them back
-- with ::timestamptz exactly.
CREATE OR REPLACE FUNCTION public.iso_utc(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

GRANT EXECUTE ON FUNCTION public.iso_utc(timestamptz) TO edgefront_app;

-- Keep updated_at honest without relying on every writer to set it. Each table's trigger
-- lives in its capability's functions file (numbered migrations run before this function
-- exists on a fresh database, so they cannot create it).
CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS tenants_set_updated_at ON public.tenants;
CREATE TRIGGER tenants_set_updated_at BEFORE UPDATE ON public.tenants
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Host → tenant lookups. SECURITY DEFINER runs them as their owner (the migrating superuser,
-- which bypasses RLS); the pinned search_path stops a caller from shadowing `tenants` with
-- an object in another schema. They return every status: the edge decides what a suspended
-- or deleted tenant gets. A custom domain resolves only once verified (0007_identity: several
-- tenants may claim a hostname, one at most holds it verified). Each row also carries the
-- tenant's verified custom domains (`domains`, sorted; the same list as tenant_hosts_json), so
-- the edge tells the tenant's own browser origins from the record it caches, without a lookup
-- per Origin header; a change to them invalidates that record. The return type gained
-- `domains` in 0010_tenant_hosts, which drops the previous definitions.
CREATE OR REPLACE FUNCTION public.resolve_tenant_by_slug(p_slug text)
RETURNS TABLE (id uuid, slug text, name text, tier text, status text, settings jsonb,
               domains text[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT t.id, t.slug, t.name, t.tier, t.status, t.settings,
           ARRAY(SELECT v.hostname FROM public.tenant_domains v
                 WHERE v.tenant_id = t.id AND v.verified_at IS NOT NULL ORDER BY v.hostname)
    FROM public.tenants t
    WHERE t.slug = lower(p_slug)
$$;

REVOKE ALL ON FUNCTION public.resolve_tenant_by_slug(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.resolve_tenant_by_slug(text) TO edgefront_app;

CREATE OR REPLACE FUNCTION public.resolve_tenant_by_domain(p_hostname text)
RETURNS TABLE (id uuid, slug text, name text, tier text, status text, settings jsonb,
               domains text[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT t.id, t.slug, t.name, t.tier, t.status, t.settings,
           ARRAY(SELECT v.hostname FROM public.tenant_domains v
                 WHERE v.tenant_id = t.id AND v.verified_at IS NOT NULL ORDER BY v.hostname)
    FROM public.tenant_domains d
    JOIN public.tenants t ON t.id = d.tenant_id
    WHERE d.hostname = lower(p_hostname) AND d.verified_at IS NOT NULL
$$;

REVOKE ALL ON FUNCTION public.resolve_tenant_by_domain(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.resolve_tenant_by_domain(text) TO edgefront_app;
