-- functions/05_audit: the audit log's writer, its append-only guard and its document (table:
-- migrations/0011_audit.sql). Sorted before the capability files, whose writers call
-- public.audit_record once per successful write, in the write's own transaction: a refused
-- write or an idempotent replay returns before it, so it records nothing.
--
-- Who, and which request: the batch's prelude (core/src/sql.rs) sets `app.actor` (a user id,
-- `visitor:<id>` or `platform:<user id>`) and `app.request_id` with set_config(…, true), next
-- to `app.current_tenant`; both read as NULL when unset.
--
-- A repeatable file (see migrations/README.md): re-applied whenever its text changes.

-- Fields whose values never reach the log: personal data and secrets. The field is still
-- listed as changed, with both values '***'. (`name` of a person is masked by the callers that
-- describe people: members and orders pass it in p_mask.)
CREATE OR REPLACE FUNCTION public.audit_masked(p_key text, p_mask text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_key = ANY (p_mask)
        OR p_key IN ('email', 'customer_email', 'customer_name', 'customer', 'shipping_address',
                     'address', 'phone', 'password', 'api_key', 'token', 'token_hash',
                     'verification_token', 'secret')
        OR p_key ~ '(^|[._])(secret|password|api_key|token|token_hash|email|phone)$'
$$;

GRANT EXECUTE ON FUNCTION public.audit_masked(text, text[]) TO edgefront_app;

-- {field: {"before": …, "after": …}} for the top-level fields whose values differ between two
-- documents (NULL document: every field of the other one, as JSON null on its side), masked;
-- created_at and updated_at are left out.
CREATE OR REPLACE FUNCTION public.audit_diff(p_before jsonb, p_after jsonb, p_mask text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k.key,
               CASE WHEN public.audit_masked(k.key, p_mask)
                    THEN jsonb_build_object('before', CASE WHEN p_before ? k.key THEN '"***"'::jsonb ELSE 'null'::jsonb END,
                                            'after', CASE WHEN p_after ? k.key THEN '"***"'::jsonb ELSE 'null'::jsonb END)
                    ELSE jsonb_build_object('before', coalesce(p_before -> k.key, 'null'::jsonb),
                                            'after', coalesce(p_after -> k.key, 'null'::jsonb))
               END ORDER BY k.key), '{}'::jsonb)
    FROM (SELECT jsonb_object_keys(coalesce(p_before, '{}'::jsonb)) AS key
          UNION
          SELECT jsonb_object_keys(coalesce(p_after, '{}'::jsonb))) k
    WHERE (p_before -> k.key) IS DISTINCT FROM (p_after -> k.key)
      -- Bookkeeping every write changes; the row's own `at` says when.
      AND k.key NOT IN ('created_at', 'updated_at')
$$;

GRANT EXECUTE ON FUNCTION public.audit_diff(jsonb, jsonb, text[]) TO edgefront_app;

-- Records one write of p_tenant. SECURITY INVOKER: called by the app role's own functions it
-- inserts under RLS (only the current tenant); called from a SECURITY DEFINER function (the
-- platform's, sign-up, members) it runs as their owner. Returns the row's id.
CREATE OR REPLACE FUNCTION public.audit_record_for(p_tenant uuid, p_action text, p_target_type text,
    p_target_id text, p_before jsonb, p_after jsonb, p_mask text[] DEFAULT '{}',
    p_actor text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'audit_record: no tenant' USING ERRCODE = '42501';
    END IF;
    INSERT INTO public.audit_log (tenant_id, actor, action, target_type, target_id, changes, request_id)
    VALUES (p_tenant,
            coalesce(p_actor, NULLIF(current_setting('app.actor', true), '')),
            p_action, p_target_type, p_target_id,
            public.audit_diff(p_before, p_after, coalesce(p_mask, '{}')),
            NULLIF(current_setting('app.request_id', true), ''))
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

REVOKE ALL ON FUNCTION public.audit_record_for(uuid, text, text, text, jsonb, jsonb, text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.audit_record_for(uuid, text, text, text, jsonb, jsonb, text[], text) TO edgefront_app;

-- The same for the batch's tenant (app.current_tenant).
CREATE OR REPLACE FUNCTION public.audit_record(p_action text, p_target_type text, p_target_id text,
    p_before jsonb, p_after jsonb, p_mask text[] DEFAULT '{}')
RETURNS uuid
LANGUAGE sql AS $$
    SELECT public.audit_record_for(public.current_tenant_id(), p_action, p_target_type, p_target_id,
                                   p_before, p_after, p_mask)
$$;

REVOKE ALL ON FUNCTION public.audit_record(text, text, text, jsonb, jsonb, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.audit_record(text, text, text, jsonb, jsonb, text[]) TO edgefront_app;

-- Defence in depth: history is never rewritten, whatever a role was granted.
CREATE OR REPLACE FUNCTION public.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = '42501';
END
$$;

DROP TRIGGER IF EXISTS audit_log_append_only ON public.audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON public.audit_log
    FOR EACH ROW EXECUTE FUNCTION public.audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON public.audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON public.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION public.audit_log_append_only();

-- A row as GET /v1/audit shows it.
CREATE OR REPLACE FUNCTION public.audit_json(a public.audit_log) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'at', public.iso_utc(a.at), 'actor', a.actor, 'action', a.action,
        'target', jsonb_build_object('type', a.target_type, 'id', a.target_id),
        'changes', a.changes, 'request_id', a.request_id)
$$;

GRANT EXECUTE ON FUNCTION public.audit_json(public.audit_log) TO edgefront_app;
