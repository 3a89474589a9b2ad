-- 0003_files: uploaded files (objects in S3 under the tenant's prefix) and the tier limits on
-- them. Follows 0001's row-level-security convention and 0002's function style: each function
-- is SECURITY INVOKER (runs as `edgefront_app`, under RLS) and returns a jsonb outcome, so one
-- API step is one SQL statement in the request's tenant transaction.
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

DROP TRIGGER IF EXISTS files_set_updated_at ON public.files;
CREATE TRIGGER files_set_updated_at BEFORE UPDATE ON public.files
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

ALTER TABLE public.files ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.files FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.files;
CREATE POLICY tenant_isolation ON public.files
    USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

-- Rows are never removed by the app: deletion is a status, kept for audit.
GRANT SELECT, INSERT, UPDATE ON public.files TO edgefront_app;

-- A file as the API shows it.
CREATE OR REPLACE FUNCTION public.file_json(f public.files) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', f.id, 'key', f.key, 'filename', f.filename, 'content_type', f.content_type,
        'declared_size', f.declared_size, 'max_size', f.max_size, 'status', f.status,
        'size', f.size, 'etag', f.etag, 'created_by', f.created_by,
        'created_at', public.iso_utc(f.created_at),
        'updated_at', public.iso_utc(f.updated_at),
        'completed_at', public.iso_utc(f.completed_at))
$$;

-- Starts an upload: checks the tenant's tier (media type, size) and records a pending file.
-- The edge chose p_id and p_key (`{tenant}/{id}/{safe name}`); the key CHECK verifies them.
-- Outcomes:
--   {"outcome":"created","file":{…}}
--   {"outcome":"type_not_allowed","allowed":[…],"max_bytes":n}
--   {"outcome":"too_large","max_bytes":n}
-- Nothing is written unless the outcome is "created".
CREATE OR REPLACE FUNCTION public.upload_create(
    p_id uuid, p_key text, p_filename text, p_content_type text, p_size bigint, p_created_by text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_max    bigint;
    v_types  text[];
    v_row    public.files;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    SELECT l.max_upload_bytes, l.allowed_content_types INTO v_max, v_types
    FROM public.tenants t JOIN public.tier_limits l ON l.tier = t.tier
    WHERE t.id = v_tenant;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no tier limits for tenant %', v_tenant USING ERRCODE = '42501';
    END IF;
    IF NOT (p_content_type = ANY (v_types)) THEN
        RETURN jsonb_build_object('outcome', 'type_not_allowed', 'allowed', to_jsonb(v_types),
                                  'max_bytes', v_max);
    END IF;
    IF p_size > v_max THEN
        RETURN jsonb_build_object('outcome', 'too_large', 'max_bytes', v_max);
    END IF;
    INSERT INTO public.files
        (tenant_id, id, key, filename, content_type, declared_size, max_size, created_by)
    VALUES (v_tenant, p_id, p_key, p_filename, p_content_type, p_size, v_max, p_created_by)
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('outcome', 'created', 'file', public.file_json(v_row));
END
$$;

-- Marks a pending file ready with what S3 reported. Outcomes:
--   {"outcome":"completed","file":{…}}      (pending → ready)
--   {"outcome":"already_ready","file":{…}}  (a repeated complete: unchanged)
--   {"outcome":"not_found"}                 (no such live file for this tenant)
CREATE OR REPLACE FUNCTION public.upload_complete(p_id uuid, p_size bigint, p_etag text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_row public.files;
BEGIN
    UPDATE public.files
    SET status = 'ready', size = p_size, etag = p_etag, completed_at = clock_timestamp()
    WHERE id = p_id AND status = 'pending'
    RETURNING * INTO v_row;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'completed', 'file', public.file_json(v_row));
    END IF;
    SELECT * INTO v_row FROM public.files WHERE id = p_id AND status = 'ready';
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'already_ready', 'file', public.file_json(v_row));
    END IF;
    RETURN jsonb_build_object('outcome', 'not_found');
END
$$;

-- Marks a live file deleted (after the edge deleted its object). Outcomes: deleted, not_found.
CREATE OR REPLACE FUNCTION public.file_delete(p_id uuid)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.files SET status = 'deleted', deleted_at = clock_timestamp()
    WHERE id = p_id AND status <> 'deleted';
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'deleted');
    END IF;
    RETURN jsonb_build_object('outcome', 'not_found');
END
$$;

-- For catalog items: which of p_ids are ready images of the current tenant, in p_ids' order
-- (others are skipped), as [{"id","key","filename","content_type"}]. The storefront presigns a
-- GET per entry (uploads::image_url).
CREATE OR REPLACE FUNCTION public.ready_images(p_ids uuid[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', f.id, 'key', f.key, 'filename', f.filename, 'content_type', f.content_type)
             ORDER BY ids.ord), '[]'::jsonb)
    FROM unnest(p_ids) WITH ORDINALITY AS ids (id, ord)
    JOIN public.files f ON f.id = ids.id
    WHERE f.status = 'ready' AND f.content_type LIKE 'image/%'
$$;

REVOKE ALL ON FUNCTION public.upload_create(uuid, text, text, text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.upload_complete(uuid, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.file_delete(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.file_json(public.files) TO edgefront_app;
GRANT EXECUTE ON FUNCTION public.upload_create(uuid, text, text, text, bigint, text) TO edgefront_app;
GRANT EXECUTE ON FUNCTION public.upload_complete(uuid, bigint, text) TO edgefront_app;
GRANT EXECUTE ON FUNCTION public.file_delete(uuid) TO edgefront_app;
GRANT EXECUTE ON FUNCTION public.ready_images(uuid[]) TO edgefront_app;
