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
        'completed_at', public.iso_utc(f.completed_at),
        'expires_at', public.iso_utc(f.expires_at))
$$;

GRANT EXECUTE ON FUNCTION public.file_json(public.files) TO edgefront_app;

-- What a file counts against its tenant's storage quota: a ready file its size, a pending one
-- its declared size (upload_create discounts those past their expires_at), others nothing.
CREATE OR REPLACE FUNCTION public.file_counted_bytes(f public.files) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE f.status WHEN 'ready' THEN f.size WHEN 'pending' THEN f.declared_size ELSE 0 END
$$;

GRANT EXECUTE ON FUNCTION public.file_counted_bytes(public.files) TO edgefront_app;

-- Adds p_delta to p_tenant's counted storage (public.file_storage, migrations/0012).
CREATE OR REPLACE FUNCTION public.file_storage_add(p_tenant uuid, p_delta bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_delta > 0 THEN
        INSERT INTO public.file_storage AS s (tenant_id, bytes) VALUES (p_tenant, p_delta)
        ON CONFLICT (tenant_id) DO UPDATE SET bytes = s.bytes + EXCLUDED.bytes;
    ELSIF p_delta < 0 THEN
        -- No row: the tenant is being deleted (its row went first), or it never counted.
        UPDATE public.file_storage SET bytes = bytes + p_delta WHERE tenant_id = p_tenant;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION public.file_storage_add(uuid, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.file_storage_add(uuid, bigint) TO edgefront_app;

-- Keeps public.file_storage equal to Σ file_counted_bytes of each tenant's files, in the
-- transaction of every write to files (SECURITY INVOKER: the app's writes count under RLS).
CREATE OR REPLACE FUNCTION public.files_count_storage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.tenant_id = NEW.tenant_id THEN
        PERFORM public.file_storage_add(NEW.tenant_id,
            public.file_counted_bytes(NEW) - public.file_counted_bytes(OLD));
    ELSE
        IF TG_OP <> 'INSERT' THEN
            PERFORM public.file_storage_add(OLD.tenant_id, -public.file_counted_bytes(OLD));
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM public.file_storage_add(NEW.tenant_id, public.file_counted_bytes(NEW));
        END IF;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS files_count_storage ON public.files;
CREATE TRIGGER files_count_storage
    AFTER INSERT OR DELETE OR UPDATE OF tenant_id, status, size, declared_size ON public.files
    FOR EACH ROW EXECUTE FUNCTION public.files_count_storage();

-- The counters from the files themselves, with writers to files kept out meanwhile: whatever
-- was written before the trigger existed (or while it was being replaced) is counted.
LOCK TABLE public.files IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO public.file_storage AS s (tenant_id, bytes)
SELECT t.id, coalesce(sum(public.file_counted_bytes(f)), 0)
FROM public.tenants t LEFT JOIN public.files f ON f.tenant_id = t.id
GROUP BY t.id
ON CONFLICT (tenant_id) DO UPDATE SET bytes = EXCLUDED.bytes;

-- Starts an upload. One statement does, in order:
--   1. the sweep: up to 10 of the tenant's rows whose URLs have expired and whose staging
--      object is not yet deleted are marked swept (pending ones become `expired`); their keys
--      are returned in `swept` (every outcome) and the edge deletes their staging objects.
--   2. the tier: media type and largest object.
--   3. the storage quota (settings.limits.max_storage_bytes, else the tier's; NULL: none),
--      under the lock of the tenant's public.file_storage row, so concurrent presigns cannot
--      overshoot: Σ size of ready files + Σ declared_size of pending files not yet expired
--      + p_size ≤ limit. The row holds both sums (kept by files_count_storage), less the
--      pending files past expires_at that the sweep has not marked yet.
--   4. the pending row, expiring p_ttl_seconds from now (the URLs' lifetime).
-- The edge chose p_id and p_key (`{tenant}/{id}/{safe name}`); the key CHECK verifies them.
-- Outcomes (each with "swept":[key, …]):
--   {"outcome":"created","file":{…}}
--   {"outcome":"type_not_allowed","allowed":[…],"max_bytes":n}
--   {"outcome":"too_large","max_bytes":n}
--   {"outcome":"storage_limit","limit":n,"used":n}
-- No file is written unless the outcome is "created".
CREATE OR REPLACE FUNCTION public.upload_create(
    p_id uuid, p_key text, p_filename text, p_content_type text, p_size bigint, p_created_by text,
    p_ttl_seconds integer)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_max    bigint;
    v_types  text[];
    v_quota  bigint;
    v_used   bigint;
    v_swept  jsonb;
    v_row    public.files;
    v_now    timestamptz := clock_timestamp();
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    IF p_ttl_seconds IS NULL OR p_ttl_seconds < 1 THEN
        RAISE EXCEPTION 'p_ttl_seconds must be positive' USING ERRCODE = '22023';
    END IF;
    -- Rows another transaction holds are left for the next sweep. (`v_now`, not
    -- clock_timestamp(): a volatile call is a filter on every unswept row, a value bounds the
    -- index scan.)
    WITH due AS (
        SELECT f.tenant_id, f.id FROM public.files f
        WHERE f.tenant_id = v_tenant AND f.staging_swept_at IS NULL
          AND f.expires_at <= v_now
        ORDER BY f.expires_at
        LIMIT 10
        FOR UPDATE SKIP LOCKED
    ), swept AS (
        UPDATE public.files f
        SET status = CASE WHEN f.status = 'pending' THEN 'expired' ELSE f.status END,
            staging_swept_at = clock_timestamp()
        FROM due WHERE f.tenant_id = due.tenant_id AND f.id = due.id
        RETURNING f.key
    )
    SELECT coalesce(jsonb_agg(key ORDER BY key), '[]'::jsonb) INTO v_swept FROM swept;

    SELECT l.max_upload_bytes, l.allowed_content_types,
           coalesce((t.settings #>> '{limits,max_storage_bytes}')::bigint, l.max_storage_bytes)
    INTO v_max, v_types, v_quota
    FROM public.tenants t JOIN public.tier_limits l ON l.tier = t.tier
    WHERE t.id = v_tenant;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no tier limits for tenant %', v_tenant USING ERRCODE = '42501';
    END IF;
    IF NOT (p_content_type = ANY (v_types)) THEN
        RETURN jsonb_build_object('outcome', 'type_not_allowed', 'allowed', to_jsonb(v_types),
                                  'max_bytes', v_max, 'swept', v_swept);
    END IF;
    IF p_size > v_max THEN
        RETURN jsonb_build_object('outcome', 'too_large', 'max_bytes', v_max, 'swept', v_swept);
    END IF;
    IF v_quota IS NOT NULL THEN
        -- One presign per tenant at a time past this point, until the transaction ends: the
        -- row read below then counts every file committed before (and the trigger adds this
        -- one under the same lock).
        INSERT INTO public.file_storage (tenant_id) VALUES (v_tenant)
        ON CONFLICT (tenant_id) DO NOTHING;
        SELECT s.bytes INTO v_used FROM public.file_storage s
        WHERE s.tenant_id = v_tenant FOR UPDATE;
        v_now := clock_timestamp();
        v_used := v_used - (
            SELECT coalesce(sum(f.declared_size), 0) FROM public.files f
            WHERE f.tenant_id = v_tenant AND f.staging_swept_at IS NULL
              AND f.expires_at <= v_now AND f.status = 'pending');
        IF v_used + p_size > v_quota THEN
            RETURN jsonb_build_object('outcome', 'storage_limit', 'limit', v_quota,
                                      'used', v_used, 'swept', v_swept);
        END IF;
    END IF;
    INSERT INTO public.files
        (tenant_id, id, key, filename, content_type, declared_size, max_size, created_by,
         expires_at)
    VALUES (v_tenant, p_id, p_key, p_filename, p_content_type, p_size, v_max, p_created_by,
            clock_timestamp() + make_interval(secs => p_ttl_seconds))
    RETURNING * INTO v_row;
    PERFORM public.audit_record('file.create', 'file', v_row.id::text, NULL, public.file_json(v_row));
    RETURN jsonb_build_object('outcome', 'created', 'file', public.file_json(v_row),
                              'swept', v_swept);
END
$$;

REVOKE ALL ON FUNCTION public.upload_create(uuid, text, text, text, bigint, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.upload_create(uuid, text, text, text, bigint, text, integer) TO edgefront_app;

-- Marks a pending file ready with what S3 reported (the edge has copied the staging object to
-- the file's key). A pending file whose URLs have expired is never completed. Outcomes:
--   {"outcome":"completed","file":{…}}      (pending → ready)
--   {"outcome":"already_ready","file":{…}}  (a repeated complete: unchanged)
--   {"outcome":"expired"}                   (expired, or pending past expires_at)
--   {"outcome":"not_found"}                 (no such live file for this tenant)
CREATE OR REPLACE FUNCTION public.upload_complete(p_id uuid, p_size bigint, p_etag text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_row public.files;
    v_cur public.files;
BEGIN
    SELECT * INTO v_cur FROM public.files
    WHERE id = p_id AND status = 'pending' AND expires_at > clock_timestamp()
    FOR UPDATE;
    UPDATE public.files
    SET status = 'ready', size = p_size, etag = p_etag, completed_at = clock_timestamp()
    WHERE id = p_id AND status = 'pending' AND expires_at > clock_timestamp()
    RETURNING * INTO v_row;
    IF FOUND THEN
        PERFORM public.audit_record('file.complete', 'file', v_row.id::text,
                                    public.file_json(v_cur), public.file_json(v_row));
        RETURN jsonb_build_object('outcome', 'completed', 'file', public.file_json(v_row));
    END IF;
    SELECT * INTO v_row FROM public.files WHERE id = p_id AND status <> 'deleted';
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    ELSIF v_row.status = 'ready' THEN
        RETURN jsonb_build_object('outcome', 'already_ready', 'file', public.file_json(v_row));
    END IF;
    RETURN jsonb_build_object('outcome', 'expired');
END
$$;

REVOKE ALL ON FUNCTION public.upload_complete(uuid, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.upload_complete(uuid, bigint, text) TO edgefront_app;

-- Marks a live file deleted (after the edge deleted its object). Outcomes: deleted, not_found.
CREATE OR REPLACE FUNCTION public.file_delete(p_id uuid)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_cur public.files;
    v_row public.files;
BEGIN
    SELECT * INTO v_cur FROM public.files WHERE id = p_id AND status <> 'deleted' FOR UPDATE;
    UPDATE public.files SET status = 'deleted', deleted_at = clock_timestamp()
    WHERE id = p_id AND status <> 'deleted'
    RETURNING * INTO v_row;
    IF FOUND THEN
        PERFORM public.audit_record('file.delete', 'file', v_row.id::text,
                                    public.file_json(v_cur), public.file_json(v_row));
        RETURN jsonb_build_object('outcome', 'deleted');
    END IF;
    RETURN jsonb_build_object('outcome', 'not_found');
END
$$;

REVOKE ALL ON FUNCTION public.file_delete(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.file_delete(uuid) TO edgefront_app;

-- ready_images(uuid[]) was the storefront's per-item image list. The storefront's item document
-- (core/src/storefront.rs, PUBLIC_ITEM) now holds it as a subquery: Postgres cannot inline a SQL
-- function with a FROM and ran it through its SQL-function executor once per listed item.
DROP FUNCTION IF EXISTS public.ready_images(uuid[]);
