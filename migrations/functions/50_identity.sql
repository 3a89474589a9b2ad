-- functions/50_identity: users, memberships, invitations, the platform's tenant management,
-- self-service signup, tenant settings, custom domains and the usage report. Tables:
-- migrations/0007_identity.sql (and tenants/tenant_domains from 0001).
--
-- Each function returns one jsonb document (`SELECT public.f(…)::text`), `{"outcome": …}` for
-- the writers; nothing is written unless the outcome says so. Tenant-scoped functions take the
-- tenant from current_tenant_id() (the batch's set_config) and raise 42501 when it is unset.
--
-- Who runs as whom:
--   * SECURITY INVOKER (run as `edgefront_app`, under RLS): member_remove, invitation_rows,
--     invitation_revoke, tenant_json, domain_delete, tenant_usage.
--   * SECURITY DEFINER (run as the owner, the migrating superuser, which bypasses RLS; the
--     tenant predicate is explicit in every statement): everything that reads `users` (no
--     privilege for the app role: a person's email and name are shown only to the tenants
--     they belong to), that looks across tenants (domains held by another tenant, the
--     platform's functions, signup), or that writes `tenants` (no UPDATE for the app role).
--     Each pins search_path = public, pg_temp and is executable by edgefront_app only;
--     platform_purge by nobody but its owner (an operator job).
--
-- Concurrency. Waits happen in one order, so they cannot deadlock:
--   member_update_role, member_remove: the tenant's owner rows (FOR UPDATE, in user_id order)
--       → the target's row. Every demotion or removal that could take the last owner queues
--       on the owner rows, and after the wait the count is taken with a new snapshot.
--   invitation_create, invitation_accept, identity_resolve's auto-accept: an advisory lock on
--       the tenant's membership ('tenant_members:<tenant>') → the invitation rows. Member and
--       pending-invitation counts (max_members) are taken after it, and an invitation is
--       accepted once: the second of two concurrent accepts finds it accepted.
--   signup_create: the user's row (FOR UPDATE) → the new tenant.
--   tenant_update, platform_tenant_update/_delete: the tenant's row (FOR UPDATE).
--   domain_verify: the claim's row (FOR UPDATE); two tenants verifying one hostname at once
--       meet at the unique index on verified hostnames, and the second gets `taken`.
--
-- A repeatable file (see migrations/README.md): re-applied whenever its text changes.

-- owner > admin > member (anything else: 0, outranked by every role).
CREATE OR REPLACE FUNCTION public.role_rank(p_role text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_role WHEN 'owner' THEN 3 WHEN 'admin' THEN 2 WHEN 'member' THEN 1 ELSE 0 END
$$;

GRANT EXECUTE ON FUNCTION public.role_rank(text) TO edgefront_app;

-- A member as the API shows it. Only SECURITY DEFINER functions can read the user row.
CREATE OR REPLACE FUNCTION public.member_json(m public.tenant_members, u public.users) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'user_id', m.user_id, 'email', u.email, 'name', u.name, 'role', m.role,
        'joined_at', public.iso_utc(m.created_at))
$$;

REVOKE ALL ON FUNCTION public.member_json(public.tenant_members, public.users) FROM PUBLIC;

-- An invitation as the API shows it: never its token or the token's hash.
CREATE OR REPLACE FUNCTION public.invitation_json(i public.tenant_invitations) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', i.id, 'email', i.email, 'role', i.role,
        'status', CASE WHEN i.accepted_at IS NOT NULL THEN 'accepted'
                       WHEN i.revoked_at IS NOT NULL THEN 'revoked'
                       WHEN i.expires_at <= now() THEN 'expired'
                       ELSE 'pending' END,
        'created_at', public.iso_utc(i.created_at),
        'expires_at', public.iso_utc(i.expires_at),
        'accepted_at', public.iso_utc(i.accepted_at))
$$;

REVOKE ALL ON FUNCTION public.invitation_json(public.tenant_invitations) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.invitation_json(public.tenant_invitations) TO edgefront_app;

-- A domain as the API shows it, with the TXT record that proves it.
CREATE OR REPLACE FUNCTION public.domain_json(d public.tenant_domains) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'hostname', d.hostname,
        'status', CASE WHEN d.verified_at IS NULL THEN 'pending' ELSE 'verified' END,
        'verified_at', public.iso_utc(d.verified_at),
        'created_at', public.iso_utc(d.created_at),
        'verification', jsonb_build_object(
            'type', 'TXT',
            'name', '_edgefront-challenge.' || d.hostname,
            'value', 'edgefront-verify=' || d.verification_token))
$$;

REVOKE ALL ON FUNCTION public.domain_json(public.tenant_domains) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.domain_json(public.tenant_domains) TO edgefront_app;

-- A tenant's domains (pending and verified), oldest first. Under RLS for the app role.
CREATE OR REPLACE FUNCTION public.tenant_domains_json(p_tenant uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(public.domain_json(d) ORDER BY d.created_at, d.hostname), '[]'::jsonb)
    FROM public.tenant_domains d
    WHERE d.tenant_id = p_tenant
$$;

REVOKE ALL ON FUNCTION public.tenant_domains_json(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_domains_json(uuid) TO edgefront_app;

-- The hosts a tenant is cached under (the edge deletes their tenant keys after a change):
-- {"slug", "domains": [verified hostnames]}. Under RLS for the app role.
CREATE OR REPLACE FUNCTION public.tenant_hosts_json(p_tenant uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'slug', t.slug,
        'domains', coalesce((
            SELECT jsonb_agg(d.hostname ORDER BY d.hostname)
            FROM public.tenant_domains d
            WHERE d.tenant_id = t.id AND d.verified_at IS NOT NULL), '[]'::jsonb))
    FROM public.tenants t
    WHERE t.id = p_tenant
$$;

REVOKE ALL ON FUNCTION public.tenant_hosts_json(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_hosts_json(uuid) TO edgefront_app;

-- A tenant as its members see it (GET /v1/tenant).
CREATE OR REPLACE FUNCTION public.tenant_row_json(t public.tenants) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'slug', t.slug, 'name', t.name, 'tier', t.tier, 'status', t.status,
        'settings', t.settings, 'version', t.version,
        'created_at', public.iso_utc(t.created_at),
        'updated_at', public.iso_utc(t.updated_at),
        'domains', public.tenant_domains_json(t.id))
$$;

REVOKE ALL ON FUNCTION public.tenant_row_json(public.tenants) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_row_json(public.tenants) TO edgefront_app;

-- A tenant as the platform sees it. Only SECURITY DEFINER functions call it.
CREATE OR REPLACE FUNCTION public.platform_tenant_json(t public.tenants) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'slug', t.slug, 'name', t.name, 'tier', t.tier, 'status', t.status,
        'settings', t.settings,
        'created_at', public.iso_utc(t.created_at),
        'updated_at', public.iso_utc(t.updated_at),
        'deleted_at', public.iso_utc(t.deleted_at),
        'version', t.version,
        'members', (SELECT count(*) FROM public.tenant_members m WHERE m.tenant_id = t.id),
        'domains', public.tenant_domains_json(t.id))
$$;

REVOKE ALL ON FUNCTION public.platform_tenant_json(public.tenants) FROM PUBLIC;

-- The tenant's member limit: settings.limits.max_members, else its tier's (NULL: unlimited).
CREATE OR REPLACE FUNCTION public.tenant_max_members(p_tenant uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce((t.settings #>> '{limits,max_members}')::integer, l.max_members)
    FROM public.tenants t JOIN public.tier_limits l ON l.tier = t.tier
    WHERE t.id = p_tenant
$$;

REVOKE ALL ON FUNCTION public.tenant_max_members(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_max_members(uuid) TO edgefront_app;

-- 1. The user behind a token, and their role in p_tenant. Called alone (one autocommit
-- statement, no tenant set). Creates the user on first sight and refreshes email,
-- email_verified and name when the token says otherwise (the row is written only then, so the
-- common case takes no lock). With p_tenant: the user's role there; a user with no role but a
-- verified email that a pending auto_accept invitation names (platform_tenant_create's owner
-- invitation) joins now, with the invitation's role.
-- Returns {"user_id": uuid, "role": "owner"|"admin"|"member"|null}.
CREATE OR REPLACE FUNCTION public.identity_resolve(p_issuer text, p_subject text, p_email text,
    p_email_verified boolean, p_name text, p_tenant uuid)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    -- Kept only if it fits the column (a malformed claim must not lock the user out).
    v_email    text := CASE WHEN char_length(p_email) BETWEEN 1 AND 320 THEN lower(p_email) END;
    v_verified boolean;
    v_name     text := left(p_name, 500);
    v_cur      public.users;
    v_user     uuid;
    v_role     text;
    v_inv      public.tenant_invitations;
BEGIN
    v_verified := v_email IS NOT NULL AND coalesce(p_email_verified, false);
    SELECT * INTO v_cur FROM public.users WHERE issuer = p_issuer AND subject = p_subject;
    IF NOT FOUND THEN
        INSERT INTO public.users AS u (issuer, subject, email, email_verified, name)
        VALUES (p_issuer, p_subject, v_email, v_verified, v_name)
        ON CONFLICT (issuer, subject) DO UPDATE
            SET email = EXCLUDED.email, email_verified = EXCLUDED.email_verified,
                name = EXCLUDED.name, updated_at = clock_timestamp()
        RETURNING u.id INTO v_user;
    ELSE
        v_user := v_cur.id;
        IF (v_cur.email, v_cur.email_verified, v_cur.name) IS DISTINCT FROM (v_email, v_verified, v_name) THEN
            UPDATE public.users
            SET email = v_email, email_verified = v_verified, name = v_name, updated_at = clock_timestamp()
            WHERE id = v_user;
        END IF;
    END IF;

    IF p_tenant IS NULL THEN
        RETURN jsonb_build_object('user_id', v_user, 'role', NULL);
    END IF;
    SELECT role INTO v_role FROM public.tenant_members WHERE tenant_id = p_tenant AND user_id = v_user;
    IF v_role IS NULL AND v_verified AND EXISTS (
        SELECT 1 FROM public.tenant_invitations
        WHERE tenant_id = p_tenant AND email = v_email AND auto_accept
          AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()) THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tenant_members:' || p_tenant::text, 0));
        -- A concurrent first request of the same user may have joined meanwhile.
        SELECT role INTO v_role FROM public.tenant_members WHERE tenant_id = p_tenant AND user_id = v_user;
        IF v_role IS NULL THEN
            SELECT * INTO v_inv FROM public.tenant_invitations
            WHERE tenant_id = p_tenant AND email = v_email AND auto_accept
              AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
            ORDER BY created_at DESC, id
            LIMIT 1
            FOR UPDATE;
            IF FOUND THEN
                INSERT INTO public.tenant_members (tenant_id, user_id, role)
                VALUES (p_tenant, v_user, v_inv.role);
                UPDATE public.tenant_invitations SET accepted_at = clock_timestamp(), accepted_by = v_user
                WHERE tenant_id = p_tenant AND id = v_inv.id;
                v_role := v_inv.role;
                -- No tenant batch here (the identity lookup): the actor is the user who joined.
                PERFORM public.audit_record_for(p_tenant, 'invitation.accept', 'invitation', v_inv.id::text,
                    jsonb_build_object('status', 'pending'),
                    jsonb_build_object('status', 'accepted', 'accepted_by', v_user, 'role', v_inv.role),
                    '{}', v_user::text);
            END IF;
        END IF;
    END IF;
    RETURN jsonb_build_object('user_id', v_user, 'role', v_role);
END
$$;

REVOKE ALL ON FUNCTION public.identity_resolve(text, text, text, boolean, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.identity_resolve(text, text, text, boolean, text, uuid) TO edgefront_app;

-- 2. The current tenant's members, for the keyset pager (`FROM public.member_rows() m`).
-- No tenant set: no rows.
CREATE OR REPLACE FUNCTION public.member_rows()
RETURNS TABLE (user_id uuid, created_at timestamptz, doc json)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT m.user_id, m.created_at, public.member_json(m, u)::json
    FROM public.tenant_members m
    JOIN public.users u ON u.id = m.user_id
    WHERE m.tenant_id = public.current_tenant_id()
$$;

REVOKE ALL ON FUNCTION public.member_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.member_rows() TO edgefront_app;

-- The target member of a role change or removal, locked after the tenant's owner rows (in
-- user_id order): every change that could take the last owner queues on the owners, in one
-- order, so none deadlock and each counts owners after the previous one committed. A row of
-- NULLs when the target is no member.
CREATE OR REPLACE FUNCTION public.member_lock(p_tenant uuid, p_target uuid)
RETURNS public.tenant_members
LANGUAGE plpgsql AS $$
DECLARE
    v_cur public.tenant_members;
BEGIN
    PERFORM 1 FROM public.tenant_members
    WHERE tenant_id = p_tenant AND role = 'owner'
    ORDER BY user_id
    FOR UPDATE;
    SELECT * INTO v_cur FROM public.tenant_members
    WHERE tenant_id = p_tenant AND user_id = p_target
    FOR UPDATE;
    RETURN v_cur;
END
$$;

GRANT EXECUTE ON FUNCTION public.member_lock(uuid, uuid) TO edgefront_app;

-- 3. Changes a member's role. p_actor_role is the actor's role here ('owner' for platform
-- admins). The actor must be an admin or owner; neither the target's current role nor the new
-- one may outrank the actor's; the only owner cannot stop being one. Outcomes:
--   {"outcome":"updated","member":{…}}
--   {"outcome":"not_found"}
--   {"outcome":"forbidden","reason":"admin_required"|"target_outranks_actor"|"role_outranks_actor"}
--   {"outcome":"last_owner"}
CREATE OR REPLACE FUNCTION public.member_update_role(p_actor uuid, p_actor_role text, p_target uuid, p_role text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_cur    public.tenant_members;
    v_row    public.tenant_members;
    v_owners bigint;
    v_user   public.users;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    v_cur := public.member_lock(v_tenant, p_target);
    IF v_cur.user_id IS NULL THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    IF public.role_rank(p_actor_role) < public.role_rank('admin') THEN
        RETURN jsonb_build_object('outcome', 'forbidden', 'reason', 'admin_required');
    END IF;
    IF public.role_rank(v_cur.role) > public.role_rank(p_actor_role) THEN
        RETURN jsonb_build_object('outcome', 'forbidden', 'reason', 'target_outranks_actor');
    END IF;
    IF public.role_rank(p_role) > public.role_rank(p_actor_role) THEN
        RETURN jsonb_build_object('outcome', 'forbidden', 'reason', 'role_outranks_actor');
    END IF;
    IF v_cur.role = 'owner' AND p_role IS DISTINCT FROM 'owner' THEN
        SELECT count(*) INTO v_owners FROM public.tenant_members
        WHERE tenant_id = v_tenant AND role = 'owner';
        IF v_owners <= 1 THEN
            RETURN jsonb_build_object('outcome', 'last_owner');
        END IF;
    END IF;
    v_row := v_cur;
    IF v_cur.role IS DISTINCT FROM p_role THEN
        UPDATE public.tenant_members SET role = p_role, updated_at = clock_timestamp()
        WHERE tenant_id = v_tenant AND user_id = p_target
        RETURNING * INTO v_row;
        -- The same role again writes nothing, and records nothing.
        PERFORM public.audit_record_for(v_tenant, 'member.update', 'member', p_target::text,
            jsonb_build_object('role', v_cur.role), jsonb_build_object('role', v_row.role));
    END IF;
    SELECT * INTO v_user FROM public.users WHERE id = p_target;
    RETURN jsonb_build_object('outcome', 'updated', 'member', public.member_json(v_row, v_user));
END
$$;

REVOKE ALL ON FUNCTION public.member_update_role(uuid, text, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.member_update_role(uuid, text, uuid, text) TO edgefront_app;

-- 4. Removes a member. Anyone may remove themselves (leave); removing someone else needs an
-- admin or owner whom the target does not outrank; the only owner can neither leave nor be
-- removed. Outcomes:
--   {"outcome":"removed","user_id":uuid}
--   {"outcome":"not_found"}
--   {"outcome":"forbidden","reason":"admin_required"|"target_outranks_actor"}
--   {"outcome":"last_owner"}
CREATE OR REPLACE FUNCTION public.member_remove(p_actor uuid, p_actor_role text, p_target uuid)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_cur    public.tenant_members;
    v_owners bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    v_cur := public.member_lock(v_tenant, p_target);
    IF v_cur.user_id IS NULL THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    IF p_actor IS DISTINCT FROM p_target THEN
        IF public.role_rank(p_actor_role) < public.role_rank('admin') THEN
            RETURN jsonb_build_object('outcome', 'forbidden', 'reason', 'admin_required');
        END IF;
        IF public.role_rank(v_cur.role) > public.role_rank(p_actor_role) THEN
            RETURN jsonb_build_object('outcome', 'forbidden', 'reason', 'target_outranks_actor');
        END IF;
    END IF;
    IF v_cur.role = 'owner' THEN
        SELECT count(*) INTO v_owners FROM public.tenant_members
        WHERE tenant_id = v_tenant AND role = 'owner';
        IF v_owners <= 1 THEN
            RETURN jsonb_build_object('outcome', 'last_owner');
        END IF;
    END IF;
    DELETE FROM public.tenant_members WHERE tenant_id = v_tenant AND user_id = p_target;
    PERFORM public.audit_record('member.remove', 'member', p_target::text,
                                jsonb_build_object('role', v_cur.role), NULL);
    RETURN jsonb_build_object('outcome', 'removed', 'user_id', p_target);
END
$$;

REVOKE ALL ON FUNCTION public.member_remove(uuid, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.member_remove(uuid, text, uuid) TO edgefront_app;

-- 5. Invites p_email (lower-cased here) as p_role, valid for p_ttl_seconds. p_token_hash: the
-- sha256 (hex) of the token the edge shows once. The actor must be an admin or owner and
-- p_role must not outrank them (owners invite owners). A pending invitation for the same
-- email is revoked (superseded); it does not count against the limit. Outcomes:
--   {"outcome":"created","invitation":{…}}
--   {"outcome":"forbidden","reason":"admin_required"|"role_outranks_actor"}
--   {"outcome":"already_member"}   a member's verified email is p_email
--   {"outcome":"tier_limit","limit":n}   members + pending invitations would exceed max_members
CREATE OR REPLACE FUNCTION public.invitation_create(p_actor uuid, p_actor_role text, p_id uuid,
    p_email text, p_role text, p_token_hash text, p_ttl_seconds integer)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_email  text := lower(p_email);
    v_limit  integer;
    v_count  bigint;
    v_row    public.tenant_invitations;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    IF public.role_rank(p_actor_role) < public.role_rank('admin') THEN
        RETURN jsonb_build_object('outcome', 'forbidden', 'reason', 'admin_required');
    END IF;
    IF public.role_rank(p_role) > public.role_rank(p_actor_role) THEN
        RETURN jsonb_build_object('outcome', 'forbidden', 'reason', 'role_outranks_actor');
    END IF;
    -- One membership change of this tenant at a time from here.
    PERFORM pg_advisory_xact_lock(hashtextextended('tenant_members:' || v_tenant::text, 0));
    IF EXISTS (
        SELECT 1 FROM public.tenant_members m JOIN public.users u ON u.id = m.user_id
        WHERE m.tenant_id = v_tenant AND u.email = v_email AND u.email_verified) THEN
        RETURN jsonb_build_object('outcome', 'already_member');
    END IF;
    v_limit := public.tenant_max_members(v_tenant);
    IF v_limit IS NOT NULL THEN
        SELECT (SELECT count(*) FROM public.tenant_members WHERE tenant_id = v_tenant)
             + (SELECT count(*) FROM public.tenant_invitations
                WHERE tenant_id = v_tenant AND accepted_at IS NULL AND revoked_at IS NULL
                  AND expires_at > now() AND email <> v_email)
        INTO v_count;
        IF v_count + 1 > v_limit THEN
            RETURN jsonb_build_object('outcome', 'tier_limit', 'limit', v_limit);
        END IF;
    END IF;
    UPDATE public.tenant_invitations SET revoked_at = clock_timestamp()
    WHERE tenant_id = v_tenant AND email = v_email
      AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now();
    INSERT INTO public.tenant_invitations (tenant_id, id, email, role, token_hash, created_by, expires_at)
    VALUES (v_tenant, p_id, v_email, p_role, p_token_hash, p_actor,
            clock_timestamp() + make_interval(secs => p_ttl_seconds))
    RETURNING * INTO v_row;
    PERFORM public.audit_record_for(v_tenant, 'invitation.create', 'invitation', p_id::text,
                                    NULL, public.invitation_json(v_row));
    RETURN jsonb_build_object('outcome', 'created', 'invitation', public.invitation_json(v_row));
END
$$;

REVOKE ALL ON FUNCTION public.invitation_create(uuid, text, uuid, text, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.invitation_create(uuid, text, uuid, text, text, text, integer) TO edgefront_app;

-- 6. The current tenant's pending invitations (not accepted, revoked or expired), for the
-- keyset pager (`FROM public.invitation_rows() i`).
CREATE OR REPLACE FUNCTION public.invitation_rows()
RETURNS TABLE (id uuid, created_at timestamptz, doc json)
LANGUAGE sql STABLE AS $$
    SELECT i.id, i.created_at, public.invitation_json(i)::json
    FROM public.tenant_invitations i
    WHERE i.tenant_id = public.current_tenant_id()
      AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()
$$;

REVOKE ALL ON FUNCTION public.invitation_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.invitation_rows() TO edgefront_app;

-- 6. Revokes an invitation that is neither accepted nor revoked (an expired one too).
-- Outcomes: {"outcome":"revoked","invitation":{…}}, {"outcome":"not_found"}.
CREATE OR REPLACE FUNCTION public.invitation_revoke(p_id uuid)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_row    public.tenant_invitations;
    v_old    public.tenant_invitations;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    UPDATE public.tenant_invitations SET revoked_at = clock_timestamp()
    WHERE tenant_id = v_tenant AND id = p_id AND accepted_at IS NULL AND revoked_at IS NULL
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    v_old := v_row;
    v_old.revoked_at := NULL;
    PERFORM public.audit_record('invitation.revoke', 'invitation', p_id::text,
                                public.invitation_json(v_old), public.invitation_json(v_row));
    RETURN jsonb_build_object('outcome', 'revoked', 'invitation', public.invitation_json(v_row));
END
$$;

REVOKE ALL ON FUNCTION public.invitation_revoke(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.invitation_revoke(uuid) TO edgefront_app;

-- 7. Accepts the current tenant's invitation whose token hashes to p_token_hash, for the
-- signed-in user p_user (from identity_resolve) whose token claims p_email. Single use: the
-- invitation row is locked, and of concurrent accepts the first wins. Outcomes:
--   {"outcome":"accepted","member":{…}}
--   {"outcome":"not_found"}        no such token for this tenant, or revoked
--   {"outcome":"used"}             already accepted (by anyone)
--   {"outcome":"expired"}
--   {"outcome":"email_unverified"} the token claims no verified email
--   {"outcome":"email_mismatch"}   the invitation is for another email
--   {"outcome":"already_member","member":{…}}   (the invitation stays pending)
--   {"outcome":"tier_limit","limit":n}          members would exceed max_members
CREATE OR REPLACE FUNCTION public.invitation_accept(p_token_hash text, p_user uuid, p_email text,
    p_email_verified boolean)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_inv    public.tenant_invitations;
    v_member public.tenant_members;
    v_user   public.users;
    v_limit  integer;
    v_count  bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    -- Same order as invitation_create: the tenant's membership, then the invitation.
    PERFORM pg_advisory_xact_lock(hashtextextended('tenant_members:' || v_tenant::text, 0));
    SELECT * INTO v_inv FROM public.tenant_invitations
    WHERE tenant_id = v_tenant AND token_hash = p_token_hash
    FOR UPDATE;
    IF NOT FOUND OR v_inv.revoked_at IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    IF v_inv.accepted_at IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'used');
    END IF;
    IF v_inv.expires_at <= now() THEN
        RETURN jsonb_build_object('outcome', 'expired');
    END IF;
    IF p_email IS NULL OR NOT coalesce(p_email_verified, false) THEN
        RETURN jsonb_build_object('outcome', 'email_unverified');
    END IF;
    IF lower(p_email) <> v_inv.email THEN
        RETURN jsonb_build_object('outcome', 'email_mismatch');
    END IF;
    SELECT * INTO v_user FROM public.users WHERE id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user %', p_user USING ERRCODE = '23503';
    END IF;
    SELECT * INTO v_member FROM public.tenant_members WHERE tenant_id = v_tenant AND user_id = p_user;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'already_member', 'member', public.member_json(v_member, v_user));
    END IF;
    v_limit := public.tenant_max_members(v_tenant);
    IF v_limit IS NOT NULL THEN
        SELECT count(*) INTO v_count FROM public.tenant_members WHERE tenant_id = v_tenant;
        IF v_count + 1 > v_limit THEN
            RETURN jsonb_build_object('outcome', 'tier_limit', 'limit', v_limit);
        END IF;
    END IF;
    INSERT INTO public.tenant_members (tenant_id, user_id, role)
    VALUES (v_tenant, p_user, v_inv.role)
    RETURNING * INTO v_member;
    UPDATE public.tenant_invitations SET accepted_at = clock_timestamp(), accepted_by = p_user
    WHERE tenant_id = v_tenant AND id = v_inv.id;
    PERFORM public.audit_record_for(v_tenant, 'invitation.accept', 'invitation', v_inv.id::text,
        jsonb_build_object('status', 'pending'),
        jsonb_build_object('status', 'accepted', 'accepted_by', p_user, 'role', v_inv.role));
    RETURN jsonb_build_object('outcome', 'accepted', 'member', public.member_json(v_member, v_user));
END
$$;

REVOKE ALL ON FUNCTION public.invitation_accept(text, uuid, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.invitation_accept(text, uuid, text, boolean) TO edgefront_app;

-- 8. The platform creates a tenant and invites its owner: an auto_accept 'owner' invitation
-- for p_owner_email (created_by NULL: the platform), accepted by the owner's first signed-in
-- request (identity_resolve) or with its token. Outcomes:
--   {"outcome":"created","tenant":{platform tenant},"invitation":{…}}
--   {"outcome":"slug_taken"}
CREATE OR REPLACE FUNCTION public.platform_tenant_create(p_id uuid, p_slug text, p_name text,
    p_tier text, p_settings jsonb, p_owner_email text, p_invitation_id uuid, p_token_hash text,
    p_ttl_seconds integer)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant public.tenants;
    v_inv    public.tenant_invitations;
BEGIN
    INSERT INTO public.tenants (id, slug, name, tier, settings)
    VALUES (p_id, p_slug, p_name, coalesce(p_tier, 'basic'), coalesce(p_settings, '{}'::jsonb))
    ON CONFLICT (slug) DO NOTHING
    RETURNING * INTO v_tenant;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'slug_taken');
    END IF;
    INSERT INTO public.tenant_invitations
        (tenant_id, id, email, role, token_hash, created_by, auto_accept, expires_at)
    VALUES (p_id, p_invitation_id, lower(p_owner_email), 'owner', p_token_hash, NULL, true,
            clock_timestamp() + make_interval(secs => p_ttl_seconds))
    RETURNING * INTO v_inv;
    PERFORM public.audit_record_for(p_id, 'tenant.create', 'tenant', p_id::text, NULL,
        public.tenant_audit_doc(v_tenant)
            || jsonb_build_object('owner_email', v_inv.email, 'owner_invitation', v_inv.id));
    RETURN jsonb_build_object('outcome', 'created', 'tenant', public.platform_tenant_json(v_tenant),
                              'invitation', public.invitation_json(v_inv));
END
$$;

REVOKE ALL ON FUNCTION public.platform_tenant_create(uuid, text, text, text, jsonb, text, uuid, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.platform_tenant_create(uuid, text, text, text, jsonb, text, uuid, text, integer) TO edgefront_app;

-- A tenant as the audit log compares it: its own fields, and each top-level setting as
-- `settings.<name>`, so a diff names the setting that changed.
CREATE OR REPLACE FUNCTION public.tenant_audit_doc(t public.tenants) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('slug', t.slug, 'name', t.name, 'tier', t.tier, 'status', t.status,
                              'deleted_at', public.iso_utc(t.deleted_at), 'version', t.version)
        || coalesce((SELECT jsonb_object_agg('settings.' || e.key, e.value)
                     FROM jsonb_each(t.settings) e), '{}'::jsonb)
$$;

REVOKE ALL ON FUNCTION public.tenant_audit_doc(public.tenants) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_audit_doc(public.tenants) TO edgefront_app;

-- 9. Every tenant, for the platform's keyset pager (`FROM public.platform_tenant_rows() t`).
CREATE OR REPLACE FUNCTION public.platform_tenant_rows()
RETURNS TABLE (id uuid, slug text, tier text, status text, created_at timestamptz, doc json)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT t.id, t.slug, t.tier, t.status, t.created_at, public.platform_tenant_json(t)::json
    FROM public.tenants t
$$;

REVOKE ALL ON FUNCTION public.platform_tenant_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.platform_tenant_rows() TO edgefront_app;

-- 10. One tenant as the platform sees it, or JSON null.
CREATE OR REPLACE FUNCTION public.platform_tenant_get(p_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT coalesce((SELECT public.platform_tenant_json(t) FROM public.tenants t WHERE t.id = p_id),
                    'null'::jsonb)
$$;

REVOKE ALL ON FUNCTION public.platform_tenant_get(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.platform_tenant_get(uuid) TO edgefront_app;

-- 11. The platform changes a tenant. p_version: the If-Match version (NULL: none). p_patch
-- members: name, tier, status ('active' | 'suspended'; either takes a deleted tenant out of
-- deletion, clearing deleted_at). The version is bumped. Outcomes:
--   {"outcome":"updated","tenant":{platform tenant},"hosts":{…}}
--   {"outcome":"not_found"}
--   {"outcome":"version_mismatch","tenant":{platform tenant}}
CREATE OR REPLACE FUNCTION public.platform_tenant_update(p_id uuid, p_version integer, p_patch jsonb)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_cur    public.tenants;
    v_row    public.tenants;
    v_status text;
BEGIN
    SELECT * INTO v_cur FROM public.tenants WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    IF p_version IS NOT NULL AND v_cur.version <> p_version THEN
        RETURN jsonb_build_object('outcome', 'version_mismatch', 'tenant', public.platform_tenant_json(v_cur));
    END IF;
    v_status := CASE WHEN p_patch ? 'status' THEN p_patch->>'status' ELSE v_cur.status END;
    UPDATE public.tenants SET
        name       = CASE WHEN p_patch ? 'name' THEN p_patch->>'name' ELSE name END,
        tier       = CASE WHEN p_patch ? 'tier' THEN p_patch->>'tier' ELSE tier END,
        status     = v_status,
        deleted_at = CASE WHEN v_status = 'deleted' THEN coalesce(deleted_at, now()) END,
        version    = version + 1
    WHERE id = p_id
    RETURNING * INTO v_row;
    PERFORM public.audit_record_for(p_id,
        CASE WHEN v_row.status = 'suspended' AND v_cur.status <> 'suspended' THEN 'tenant.suspend'
             ELSE 'tenant.update' END,
        'tenant', p_id::text, public.tenant_audit_doc(v_cur), public.tenant_audit_doc(v_row));
    RETURN jsonb_build_object('outcome', 'updated', 'tenant', public.platform_tenant_json(v_row),
                              'hosts', public.tenant_hosts_json(p_id));
END
$$;

REVOKE ALL ON FUNCTION public.platform_tenant_update(uuid, integer, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.platform_tenant_update(uuid, integer, jsonb) TO edgefront_app;

-- 12. The platform deletes a tenant: status 'deleted' from now (deleted_at is kept when it
-- already was). Its data stays until platform_purge. Outcomes:
--   {"outcome":"deleted","tenant":{platform tenant},"hosts":{…}}
--   {"outcome":"not_found"}
CREATE OR REPLACE FUNCTION public.platform_tenant_delete(p_id uuid)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_cur public.tenants;
    v_row public.tenants;
BEGIN
    SELECT * INTO v_cur FROM public.tenants WHERE id = p_id FOR UPDATE;
    UPDATE public.tenants SET
        status     = 'deleted',
        deleted_at = coalesce(deleted_at, now()),
        version    = version + 1
    WHERE id = p_id
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    PERFORM public.audit_record_for(p_id, 'tenant.delete', 'tenant', p_id::text,
                                    public.tenant_audit_doc(v_cur), public.tenant_audit_doc(v_row));
    RETURN jsonb_build_object('outcome', 'deleted', 'tenant', public.platform_tenant_json(v_row),
                              'hosts', public.tenant_hosts_json(p_id));
END
$$;

REVOKE ALL ON FUNCTION public.platform_tenant_delete(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.platform_tenant_delete(uuid) TO edgefront_app;

-- 13. Purging deleted tenants after their grace period, with everything they own (ON DELETE
-- CASCADE). Their uploaded objects (prefix `<tenant id>/`) must go first, so the edge's job
-- (`POST /v1/platform/purge`) works in three steps: list the candidates, delete each one's
-- objects, then purge the tenants whose objects are gone (re-checked here, so a tenant restored
-- meanwhile survives). A failed step leaves the tenant for the next run.
CREATE OR REPLACE FUNCTION public.platform_purge_candidates(p_grace_seconds bigint, p_limit integer)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT jsonb_build_object('tenants', coalesce(jsonb_agg(to_jsonb(c.id) ORDER BY c.deleted_at, c.id), '[]'::jsonb))
    FROM (
        SELECT t.id, t.deleted_at FROM public.tenants t
        WHERE t.status = 'deleted' AND t.deleted_at IS NOT NULL
          AND t.deleted_at < now() - make_interval(secs => p_grace_seconds)
        ORDER BY t.deleted_at, t.id
        LIMIT greatest(p_limit, 0)
    ) c
$$;

REVOKE ALL ON FUNCTION public.platform_purge_candidates(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.platform_purge_candidates(bigint, integer) TO edgefront_app;

CREATE OR REPLACE FUNCTION public.platform_purge_tenants(p_ids uuid[], p_grace_seconds bigint)
RETURNS jsonb
LANGUAGE sql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM public.tenants
        WHERE id = ANY (p_ids) AND status = 'deleted' AND deleted_at IS NOT NULL
          AND deleted_at < now() - make_interval(secs => p_grace_seconds)
        RETURNING *
    ), audited AS (
        -- The audit log keeps a purged tenant's history (no foreign key) and records the purge.
        SELECT g.id, public.audit_record_for(g.id, 'tenant.purge', 'tenant', g.id::text,
                                             public.tenant_audit_doc(g), NULL) AS audit_id
        FROM gone g
    )
    SELECT jsonb_build_object('purged', coalesce(jsonb_agg(to_jsonb(id) ORDER BY id), '[]'::jsonb))
    FROM audited
$$;

REVOKE ALL ON FUNCTION public.platform_purge_tenants(uuid[], bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.platform_purge_tenants(uuid[], bigint) TO edgefront_app;

-- The same in one call, for an operator with database access and no objects to remove (not
-- for the app role). Returns {"purged": [tenant ids]}.
CREATE OR REPLACE FUNCTION public.platform_purge(p_grace_seconds bigint)
RETURNS jsonb
LANGUAGE sql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT public.platform_purge_tenants(
        ARRAY(SELECT id FROM public.tenants WHERE status = 'deleted'), p_grace_seconds)
$$;

REVOKE ALL ON FUNCTION public.platform_purge(bigint) FROM PUBLIC;

-- 14. Self-service signup: a 'basic' tenant with p_user as its owner. The user's row is locked,
-- so one user's concurrent signups create one tenant. Outcomes:
--   {"outcome":"created","tenant":{platform tenant}}
--   {"outcome":"slug_taken"}
--   {"outcome":"already_member"}   p_user is a member of a tenant already
CREATE OR REPLACE FUNCTION public.signup_create(p_user uuid, p_id uuid, p_slug text, p_name text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant public.tenants;
BEGIN
    PERFORM 1 FROM public.users WHERE id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user %', p_user USING ERRCODE = '23503';
    END IF;
    IF EXISTS (SELECT 1 FROM public.tenant_members WHERE user_id = p_user) THEN
        RETURN jsonb_build_object('outcome', 'already_member');
    END IF;
    INSERT INTO public.tenants (id, slug, name, tier)
    VALUES (p_id, p_slug, p_name, 'basic')
    ON CONFLICT (slug) DO NOTHING
    RETURNING * INTO v_tenant;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'slug_taken');
    END IF;
    INSERT INTO public.tenant_members (tenant_id, user_id, role) VALUES (p_id, p_user, 'owner');
    PERFORM public.audit_record_for(p_id, 'tenant.signup', 'tenant', p_id::text, NULL,
        public.tenant_audit_doc(v_tenant) || jsonb_build_object('owner', p_user));
    RETURN jsonb_build_object('outcome', 'created', 'tenant', public.platform_tenant_json(v_tenant));
END
$$;

REVOKE ALL ON FUNCTION public.signup_create(uuid, uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.signup_create(uuid, uuid, text, text) TO edgefront_app;

-- 15. The current tenant as its members see it (GET /v1/tenant; the ETag is its version).
CREATE OR REPLACE FUNCTION public.tenant_json()
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_doc    jsonb;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    SELECT public.tenant_row_json(t) INTO v_doc FROM public.tenants t WHERE t.id = v_tenant;
    RETURN v_doc;
END
$$;

REVOKE ALL ON FUNCTION public.tenant_json() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_json() TO edgefront_app;

-- 16. The current tenant's owner changes it. p_version: the If-Match version (NULL: none);
-- p_name: NULL leaves it; p_settings: members replacing the top-level members of settings, a
-- JSON null removing one. `limits` is the platform's (a tenant setting its own limits is
-- refused with 42501). A branding.logo_file_id given here must be a ready image file of this
-- tenant. The version is bumped. Outcomes:
--   {"outcome":"updated","tenant":{tenant},"hosts":{…}}
--   {"outcome":"version_mismatch","tenant":{tenant}}
--   {"outcome":"image_not_ready"}
CREATE OR REPLACE FUNCTION public.tenant_update(p_version integer, p_name text, p_settings jsonb)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant   uuid := public.current_tenant_id();
    v_cur      public.tenants;
    v_row      public.tenants;
    v_settings jsonb;
    v_logo     text;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    IF p_settings IS NOT NULL AND jsonb_typeof(p_settings) <> 'object' THEN
        RAISE EXCEPTION 'settings must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF p_settings ? 'limits' THEN
        RAISE EXCEPTION 'settings.limits is set by the platform' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO v_cur FROM public.tenants WHERE id = v_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % does not exist', v_tenant USING ERRCODE = '42501';
    END IF;
    IF p_version IS NOT NULL AND v_cur.version <> p_version THEN
        RETURN jsonb_build_object('outcome', 'version_mismatch', 'tenant', public.tenant_row_json(v_cur));
    END IF;
    v_logo := p_settings #>> '{branding,logo_file_id}';
    IF v_logo IS NOT NULL AND NOT (
        v_logo ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        AND EXISTS (SELECT 1 FROM public.files f
                    WHERE f.tenant_id = v_tenant AND f.id = v_logo::uuid
                      AND f.status = 'ready' AND f.content_type LIKE 'image/%')) THEN
        RETURN jsonb_build_object('outcome', 'image_not_ready');
    END IF;
    SELECT (v_cur.settings - coalesce(array_agg(e.key) FILTER (WHERE jsonb_typeof(e.value) = 'null'), '{}'::text[]))
           || coalesce(jsonb_object_agg(e.key, e.value) FILTER (WHERE jsonb_typeof(e.value) <> 'null'), '{}'::jsonb)
    INTO v_settings
    FROM jsonb_each(coalesce(p_settings, '{}'::jsonb)) AS e;
    UPDATE public.tenants SET
        name     = coalesce(p_name, name),
        settings = v_settings,
        version  = version + 1
    WHERE id = v_tenant
    RETURNING * INTO v_row;
    PERFORM public.audit_record_for(v_tenant, 'tenant.update', 'tenant', v_tenant::text,
                                    public.tenant_audit_doc(v_cur), public.tenant_audit_doc(v_row));
    RETURN jsonb_build_object('outcome', 'updated', 'tenant', public.tenant_row_json(v_row),
                              'hosts', public.tenant_hosts_json(v_tenant));
END
$$;

REVOKE ALL ON FUNCTION public.tenant_update(integer, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_update(integer, text, jsonb) TO edgefront_app;

-- 17. The current tenant claims p_hostname (lower-cased here), pending until verified with
-- p_token. Outcomes:
--   {"outcome":"created","domain":{…}}
--   {"outcome":"exists","domain":{…}}   this tenant already claimed it (its token is kept)
--   {"outcome":"taken"}                 another tenant holds it verified
CREATE OR REPLACE FUNCTION public.domain_add(p_hostname text, p_token text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_host   text := lower(p_hostname);
    v_row    public.tenant_domains;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO v_row FROM public.tenant_domains WHERE tenant_id = v_tenant AND hostname = v_host;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'exists', 'domain', public.domain_json(v_row));
    END IF;
    IF EXISTS (SELECT 1 FROM public.tenant_domains
               WHERE hostname = v_host AND verified_at IS NOT NULL AND tenant_id <> v_tenant) THEN
        RETURN jsonb_build_object('outcome', 'taken');
    END IF;
    INSERT INTO public.tenant_domains (tenant_id, hostname, verification_token)
    VALUES (v_tenant, v_host, p_token)
    ON CONFLICT (tenant_id, hostname) DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        -- The same claim, made concurrently.
        SELECT * INTO v_row FROM public.tenant_domains WHERE tenant_id = v_tenant AND hostname = v_host;
        RETURN jsonb_build_object('outcome', 'exists', 'domain', public.domain_json(v_row));
    END IF;
    PERFORM public.audit_record_for(v_tenant, 'domain.add', 'domain', v_host, NULL,
                                    public.domain_json(v_row), '{verification}');
    RETURN jsonb_build_object('outcome', 'created', 'domain', public.domain_json(v_row));
END
$$;

REVOKE ALL ON FUNCTION public.domain_add(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.domain_add(text, text) TO edgefront_app;

-- 18. Verifies the current tenant's claim on p_hostname against the TXT records the edge
-- found at _edgefront-challenge.<hostname> (p_txt; surrounding quotes and spaces ignored).
-- Outcomes:
--   {"outcome":"verified","domain":{…},"hosts":{…}}   hosts: after, with the new hostname
--   {"outcome":"already_verified","domain":{…}}
--   {"outcome":"not_found"}
--   {"outcome":"mismatch","domain":{…}}   no record is edgefront-verify=<token>
--   {"outcome":"taken"}                    another tenant verified it first
CREATE OR REPLACE FUNCTION public.domain_verify(p_hostname text, p_txt text[])
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_host   text := lower(p_hostname);
    v_row    public.tenant_domains;
    v_old    public.tenant_domains;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO v_row FROM public.tenant_domains
    WHERE tenant_id = v_tenant AND hostname = v_host
    FOR UPDATE;
    v_old := v_row;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    IF v_row.verified_at IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'already_verified', 'domain', public.domain_json(v_row));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM unnest(p_txt) AS r (txt)
                   WHERE btrim(r.txt, ' "') = 'edgefront-verify=' || v_row.verification_token) THEN
        RETURN jsonb_build_object('outcome', 'mismatch', 'domain', public.domain_json(v_row));
    END IF;
    IF EXISTS (SELECT 1 FROM public.tenant_domains
               WHERE hostname = v_host AND verified_at IS NOT NULL AND tenant_id <> v_tenant) THEN
        RETURN jsonb_build_object('outcome', 'taken');
    END IF;
    BEGIN
        UPDATE public.tenant_domains SET verified_at = clock_timestamp()
        WHERE tenant_id = v_tenant AND hostname = v_host
        RETURNING * INTO v_row;
    EXCEPTION WHEN unique_violation THEN
        -- Another tenant's verification of the same hostname committed first.
        RETURN jsonb_build_object('outcome', 'taken');
    END;
    PERFORM public.audit_record_for(v_tenant, 'domain.verify', 'domain', v_host,
        public.domain_json(v_old), public.domain_json(v_row), '{verification}');
    RETURN jsonb_build_object('outcome', 'verified', 'domain', public.domain_json(v_row),
                              'hosts', public.tenant_hosts_json(v_tenant));
END
$$;

REVOKE ALL ON FUNCTION public.domain_verify(text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.domain_verify(text, text[]) TO edgefront_app;

-- 19. Removes the current tenant's claim on p_hostname (pending or verified). Outcomes:
--   {"outcome":"deleted","hosts_before":{…}}   the hosts as they were, the removed one included
--                                              if it was verified (their cache keys go)
--   {"outcome":"not_found"}
CREATE OR REPLACE FUNCTION public.domain_delete(p_hostname text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_hosts  jsonb;
    v_row    public.tenant_domains;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    v_hosts := public.tenant_hosts_json(v_tenant);
    DELETE FROM public.tenant_domains WHERE tenant_id = v_tenant AND hostname = lower(p_hostname)
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    PERFORM public.audit_record('domain.delete', 'domain', v_row.hostname,
                                public.domain_json(v_row), NULL, '{verification}');
    RETURN jsonb_build_object('outcome', 'deleted', 'hosts_before', v_hosts);
END
$$;

REVOKE ALL ON FUNCTION public.domain_delete(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.domain_delete(text) TO edgefront_app;

-- 20. The current tenant's usage this calendar month (UTC) against its limits (tier, or
-- settings.limits; null: unlimited), counted as the enforcing functions count:
--   ai_tokens      this month's ai_quota row (30_chat); its limit once chat_begin created it,
--                  else settings.limits.ai_monthly_tokens or the tier's (chat_begin's rule)
--   catalog_items  items not archived (catalog_check_limit)
--   orders         orders and donations created this month (checkout's max_orders_per_month)
--   storage_bytes  Σ size of ready files; limit settings.limits.max_storage_bytes or the
--                  tier's (upload_create also counts pending uploads' declared sizes)
--   members        members (max_members); invitations_pending: pending invitations
CREATE OR REPLACE FUNCTION public.tenant_usage()
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_tenant   uuid := public.current_tenant_id();
    v_month    timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    v_start    timestamptz;
    v_settings jsonb;
    v_tier     public.tier_limits;
    v_quota    public.ai_quota;
    v_ai_limit bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    v_start := v_month AT TIME ZONE 'UTC';
    SELECT t.settings INTO v_settings FROM public.tenants t WHERE t.id = v_tenant;
    SELECT l.* INTO v_tier FROM public.tenants t JOIN public.tier_limits l ON l.tier = t.tier
    WHERE t.id = v_tenant;
    SELECT * INTO v_quota FROM public.ai_quota q WHERE q.tenant_id = v_tenant AND q.period = v_month::date;
    v_ai_limit := coalesce(v_quota.limit_tokens,
                           (v_settings #>> '{limits,ai_monthly_tokens}')::bigint, v_tier.ai_monthly_tokens, 0);
    RETURN jsonb_build_object(
        'period', jsonb_build_object(
            'start', public.iso_utc(v_start),
            'end', public.iso_utc((v_month + interval '1 month') AT TIME ZONE 'UTC')),
        'ai_tokens', jsonb_build_object(
            'used', coalesce(v_quota.used, 0), 'reserved', coalesce(v_quota.reserved, 0),
            'limit', v_ai_limit),
        'catalog_items', jsonb_build_object(
            'used', (SELECT count(*) FROM public.catalog_items c
                     WHERE c.tenant_id = v_tenant AND c.status <> 'archived'),
            'limit', coalesce((v_settings #>> '{limits,max_catalog_items}')::integer, v_tier.max_catalog_items)),
        'orders', jsonb_build_object(
            'used', (SELECT count(*) FROM public.orders o
                     WHERE o.tenant_id = v_tenant AND o.created_at >= v_start),
            'limit', coalesce((v_settings #>> '{limits,max_orders_per_month}')::integer, v_tier.max_orders_per_month)),
        'storage_bytes', jsonb_build_object(
            'used', (SELECT coalesce(sum(f.size), 0) FROM public.files f
                     WHERE f.tenant_id = v_tenant AND f.status = 'ready'),
            'limit', coalesce((v_settings #>> '{limits,max_storage_bytes}')::bigint, v_tier.max_storage_bytes)),
        'members', jsonb_build_object(
            'used', (SELECT count(*) FROM public.tenant_members m WHERE m.tenant_id = v_tenant),
            'limit', public.tenant_max_members(v_tenant)),
        'invitations_pending', (
            SELECT count(*) FROM public.tenant_invitations i
            WHERE i.tenant_id = v_tenant AND i.accepted_at IS NULL AND i.revoked_at IS NULL
              AND i.expires_at > now()));
END
$$;

REVOKE ALL ON FUNCTION public.tenant_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_usage() TO edgefront_app;
