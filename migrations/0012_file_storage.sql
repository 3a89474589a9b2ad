-- 0012_file_storage: each tenant's counted storage, one row, so that upload_create checks the
-- storage quota without summing the tenant's files (the sum grew with every upload: 1.7 ms at
-- 2,400 pending rows). Kept by the trigger `files_count_storage` on public.files and
-- reconciled from the files themselves in migrations/functions/20_files.sql.
--
-- bytes = Σ size of ready files + Σ declared_size of pending files, whatever their expires_at:
-- upload_create subtracts the pending files past it, which its sweep then marks expired (at most
-- 10 a call, so those are few). The row is also what concurrent presigns of a tenant queue on.
-- No CHECK (bytes >= 0): a counter that drifted must not fail uploads; the reconcile fixes it.

CREATE TABLE IF NOT EXISTS public.file_storage (
    tenant_id uuid PRIMARY KEY REFERENCES public.tenants (id) ON DELETE CASCADE,
    bytes     bigint NOT NULL DEFAULT 0
);

ALTER TABLE public.file_storage ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.file_storage FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.file_storage;
CREATE POLICY tenant_isolation ON public.file_storage
    USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

-- The trigger runs as the role that writes files: the app, under RLS, for its own tenant.
GRANT SELECT, INSERT, UPDATE ON public.file_storage TO edgefront_app;
