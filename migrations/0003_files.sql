-- 0003_files: uploaded files (objects in S3 under the tenant's prefix) and the tier limits on
-- them. Follows 0001's row-level-security convention. The upload functions and the files
-- trigger are in migrations/functions/20_files.sql.
--
-- Objects live at `{tenant_id}/{file_id}/{sanitised filename}`: the edge chooses the key, and a
-- CHECK constraint refuses any row whose key is outside its own tenant's and file's prefix.

-- Upload limits per tier: the largest object, and the media types accepted.
ALTER TABLE public.tier_limits
    ADD COLUMN IF NOT EXISTS max_upload_bytes bigint NOT NULL DEFAULT 5242880
        CONSTRAINT tier_limits_upload_bytes_range CHECK (max_upload_bytes BETWEEN 1 AND 5368709120),
    ADD COLUMN IF NOT EXISTS allowed_content_types text[] NOT NULL
        DEFAULT '{image/png,image/jpeg,image/webp,image/gif}';

UPDATE public.tier_limits SET
    max_upload_bytes = 5242880,
    allowed_content_types = '{image/png,image/jpeg,image/webp,image/gif}'
WHERE tier = 'basic';
UPDATE public.tier_limits SET
    max_upload_bytes = 52428800,
    allowed_content_types = '{image/png,image/jpeg,image/webp,image/gif,image/avif,application/pdf}'
WHERE tier = 'premium';
UPDATE public.tier_limits SET
    max_upload_bytes = 524288000,
    allowed_content_types = '{image/png,image/jpeg,image/webp,image/gif,image/avif,application/pdf,text/csv,application/zip,video/mp4}'
WHERE tier = 'enterprise';

CREATE TABLE IF NOT EXISTS public.files (
    tenant_id     uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    key           text NOT NULL,
    filename      text NOT NULL
                  CONSTRAINT files_filename_len CHECK (char_length(filename) BETWEEN 1 AND 255),
    content_type  text NOT NULL
                  CONSTRAINT files_content_type_format CHECK (content_type ~ '^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$'),
    -- What the client announced, and the most the upload may be (the tier's limit then).
    declared_size bigint NOT NULL CONSTRAINT files_declared_size_pos CHECK (declared_size > 0),
    max_size      bigint NOT NULL CONSTRAINT files_max_size_pos CHECK (max_size > 0),
    status        text NOT NULL DEFAULT 'pending'
                  CONSTRAINT files_status_valid CHECK (status IN ('pending', 'ready', 'deleted')),
    -- What S3 reported when the upload was completed.
    size          bigint CONSTRAINT files_size_range CHECK (size BETWEEN 1 AND max_size),
    etag          text,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at  timestamptz,
    deleted_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT files_key_unique UNIQUE (key),
    -- The key is always inside the row's own tenant and file prefix.
    CONSTRAINT files_key_prefix CHECK (
        starts_with(key, tenant_id::text || '/' || id::text || '/')
        AND char_length(key) > char_length(tenant_id::text || '/' || id::text || '/')
        AND char_length(key) <= 1024),
    CONSTRAINT files_ready_has_size CHECK (status <> 'ready' OR size IS NOT NULL)
);

-- Listing (keyset pagination, newest first), live files only.
CREATE INDEX IF NOT EXISTS files_live_created_idx
    ON public.files (tenant_id, created_at DESC, id DESC) WHERE status <> 'deleted';

ALTER TABLE public.files ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.files FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.files;
CREATE POLICY tenant_isolation ON public.files
    USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

-- Rows are never removed by the app: deletion is a status, kept for audit.
GRANT SELECT, INSERT, UPDATE ON public.files TO edgefront_app;
