-- 0010_tenant_hosts: resolve_tenant_by_slug / resolve_tenant_by_domain return the tenant's
-- verified custom domains too (a new `domains` column), so the edge decides CORS origins from
-- the cached tenant record. CREATE OR REPLACE cannot change a function's return type: drop the
-- old definitions here; functions/00_shared.sql creates the new ones (with their grants) right
-- after the numbered files. IF EXISTS: on a fresh database they were never created.
DROP FUNCTION IF EXISTS public.resolve_tenant_by_slug(text);
DROP FUNCTION IF EXISTS public.resolve_tenant_by_domain(text);
