-- 0008_upload_limits: what closes the upload abuse levers (issue 13, item 1). The functions
-- are in migrations/functions/20_files.sql.
--
-- * A per-tier storage quota: `tier_limits.max_storage_bytes` (NULL: unlimited), overridable
--   per tenant by `settings.limits.max_storage_bytes`; upload_create counts ready bytes plus
--   the declared bytes of live pending uploads against it.
-- * Pending uploads expire: `expires_at` is when the upload's presigned URLs stop working, and
--   a pending row past it becomes `expired` (never completable). Uploads go to a staging key
--   (`{tenant}/staging/{file}/{name}`, derived, not stored); `staging_swept_at` records that the
--   staging object was deleted once no URL could write it any more.

ALTER TABLE public.tier_limits ADD COLUMN IF NOT EXISTS max_storage_bytes bigint
    CONSTRAINT tier_limits_storage_nonneg CHECK (max_storage_bytes >= 0);
UPDATE public.tier_limits SET max_storage_bytes = CASE tier
    WHEN 'basic' THEN 1073741824          -- 1 GiB
    WHEN 'premium' THEN 21474836480       -- 20 GiB
    ELSE NULL END;                        -- enterprise: unlimited

ALTER TABLE public.files
    ADD COLUMN IF NOT EXISTS expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS staging_swept_at timestamptz;
-- Rows from before: the URLs then lasted the default 15 minutes; finished files had no staging
-- object.
UPDATE public.files SET expires_at = created_at + interval '15 minutes' WHERE expires_at IS NULL;
UPDATE public.files SET staging_swept_at = updated_at
WHERE status <> 'pending' AND staging_swept_at IS NULL;
ALTER TABLE public.files ALTER COLUMN expires_at SET NOT NULL;

ALTER TABLE public.files DROP CONSTRAINT IF EXISTS files_status_valid;
ALTER TABLE public.files ADD CONSTRAINT files_status_valid
    CHECK (status IN ('pending', 'ready', 'deleted', 'expired'));

-- The sweep: a tenant's rows whose URLs have expired and whose staging object is not yet gone.
CREATE INDEX IF NOT EXISTS files_unswept_idx
    ON public.files (tenant_id, expires_at) WHERE staging_swept_at IS NULL;

-- upload_create gained the URLs' lifetime.
DROP FUNCTION IF EXISTS public.upload_create(uuid, text, text, text, bigint, text);
