-- functions/20_files: uploads (tables: migrations/0003_files.sql). Each function is SECURITY
-- INVOKER (runs as `edgefront_app`, under RLS) and returns a jsonb outcome, so one API step is
-- one SQL statement in the request's tenant transaction.
--
-- A repeatable file (see migrations/README.md): re-applied whenever its text changes.

DROP TRIGGER IF EXISTS files_set_updated_at ON public.files;
CREATE TRIGGER files_set_updated_at BEFORE UPDATE ON public.files
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

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

GRANT EXECUTE ON FUNCTION public.file_json(public.files) TO edgefront_app;

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

REVOKE ALL ON FUNCTION public.upload_create(uuid, text, text, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.upload_create(uuid, text, text, text, bigint, text) TO edgefront_app;

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

REVOKE ALL ON FUNCTION public.upload_complete(uuid, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.upload_complete(uuid, bigint, text) TO edgefront_app;

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

REVOKE ALL ON FUNCTION public.file_delete(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.file_delete(uuid) TO edgefront_app;

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

GRANT EXECUTE ON FUNCTION public.ready_images(uuid[]) TO edgefront_app;
