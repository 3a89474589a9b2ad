-- 0011_audit: the append-only audit log (issue 14). Every write endpoint records one row in the
-- transaction of its write, through public.audit_record (migrations/functions/05_audit.sql):
-- who (actor), what (action, target), the changed fields with their before and after values
-- (secrets and personal data masked) and the request id.
--
-- Append-only: the app role may INSERT (for its current tenant, under RLS) and SELECT, never
-- UPDATE, DELETE or TRUNCATE; a trigger (05_audit.sql) refuses UPDATE and DELETE for every role
-- as well, so even a mistaken grant cannot rewrite history.
--
-- No foreign key to tenants: a tenant's audit trail outlives its purge (platform_purge_tenants
-- records the purge itself here); the rows hold no personal data in clear.

CREATE TABLE IF NOT EXISTS public.audit_log (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    -- clock_timestamp, not now(): rows of one transaction keep their order.
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A user id, `visitor:<id>`, `platform:<user id>`, or NULL (the system).
    actor       text CONSTRAINT audit_log_actor_len CHECK (char_length(actor) BETWEEN 1 AND 200),
    action      text NOT NULL
                CONSTRAINT audit_log_action_format CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type text NOT NULL CONSTRAINT audit_log_target_type_format CHECK (target_type ~ '^[a-z_]+$'),
    target_id   text NOT NULL CONSTRAINT audit_log_target_id_len CHECK (char_length(target_id) BETWEEN 1 AND 300),
    -- {field: {"before": …, "after": …}} for the fields that changed.
    changes     jsonb NOT NULL DEFAULT '{}'::jsonb
                CONSTRAINT audit_log_changes_object CHECK (jsonb_typeof(changes) = 'object'),
    request_id  text CONSTRAINT audit_log_request_id_len CHECK (char_length(request_id) BETWEEN 1 AND 200),
    PRIMARY KEY (tenant_id, id)
);

-- GET /v1/audit: newest first, keyset over (at, id).
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON public.audit_log (tenant_id, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_log_target_idx
    ON public.audit_log (tenant_id, target_type, target_id, at DESC, id DESC);

ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.audit_log;
CREATE POLICY tenant_isolation ON public.audit_log
    USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

REVOKE ALL ON public.audit_log FROM PUBLIC;
REVOKE ALL ON public.audit_log FROM edgefront_app;
GRANT SELECT, INSERT ON public.audit_log TO edgefront_app;
