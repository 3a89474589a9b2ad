-- 0007_identity: users (keyed by token issuer and subject), tenant memberships and invitations,
-- domain verification, tenant versions and soft deletion, the members tier limit. Follows
-- 0001's row-level-security convention for every tenant table. The functions that read and
-- write these tables (identity_resolve, member_*, invitation_*, platform_*, signup_create,
-- tenant_*, domain_*) are in migrations/functions/50_identity.sql.
--
-- Who reaches what:
--   * `users` is global (one row per person per issuer, not per tenant) and holds personal
--     data, so the app role has no privilege on it at all: it is read and written only by the
--     SECURITY DEFINER functions, which expose a user's email and name only to the tenants the
--     user is a member of.
--   * `tenant_members`, `tenant_invitations`, `tenant_domains`: tenant tables under RLS.
--   * `tenants` stays read-only for the app role; its writers are SECURITY DEFINER functions.

-- People. (issuer, subject) is what a token proves; `id` is what every other table stores.
CREATE TABLE IF NOT EXISTS public.users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    issuer         text NOT NULL CONSTRAINT users_issuer_len CHECK (char_length(issuer) BETWEEN 1 AND 2048),
    subject        text NOT NULL CONSTRAINT users_subject_len CHECK (char_length(subject) BETWEEN 1 AND 1024),
    -- As the token last claimed it, lower-cased (invitations match on it).
    email          text CONSTRAINT users_email_lower CHECK (email = lower(email) AND char_length(email) BETWEEN 1 AND 320),
    email_verified boolean NOT NULL DEFAULT false,
    name           text CONSTRAINT users_name_len CHECK (char_length(name) <= 500),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT users_issuer_subject_unique UNIQUE (issuer, subject)
);
-- Invitations are refused for an email that already belongs to a member.
CREATE INDEX IF NOT EXISTS users_email_idx ON public.users (email) WHERE email IS NOT NULL;

-- Not tenant-scoped, so no tenant policy: RLS is enabled with no policy at all, so a role that
-- is ever granted the table by mistake still sees no row (the owner, who runs the SECURITY
-- DEFINER functions, is not subject to it).
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.users FROM PUBLIC;
REVOKE ALL ON public.users FROM edgefront_app;

CREATE TABLE IF NOT EXISTS public.tenant_members (
    tenant_id  uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    role       text NOT NULL CONSTRAINT tenant_members_role_valid CHECK (role IN ('owner', 'admin', 'member')),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, user_id)
);
-- The members list (keyset pagination by joined time), the tenants of a user (signup refuses
-- members; the users cascade), and the owners of a tenant (last-owner protection).
CREATE INDEX IF NOT EXISTS tenant_members_created_idx ON public.tenant_members (tenant_id, created_at, user_id);
CREATE INDEX IF NOT EXISTS tenant_members_user_idx ON public.tenant_members (user_id);
CREATE INDEX IF NOT EXISTS tenant_members_owners_idx ON public.tenant_members (tenant_id, user_id) WHERE role = 'owner';

CREATE TABLE IF NOT EXISTS public.tenant_invitations (
    tenant_id   uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    email       text NOT NULL CONSTRAINT tenant_invitations_email_lower CHECK (email = lower(email) AND char_length(email) BETWEEN 3 AND 320),
    role        text NOT NULL CONSTRAINT tenant_invitations_role_valid CHECK (role IN ('owner', 'admin', 'member')),
    -- sha256 (hex) of the token; the token itself is shown once and never stored.
    token_hash  text NOT NULL CONSTRAINT tenant_invitations_token_hash_format CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    -- The inviting user; NULL: the platform (platform_tenant_create).
    created_by  uuid,
    -- Accepted by the invitee's first signed-in request (identity_resolve), without a click.
    auto_accept boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT tenant_invitations_token_hash_unique UNIQUE (token_hash),
    CONSTRAINT tenant_invitations_accepted_by CHECK ((accepted_at IS NULL) = (accepted_by IS NULL)),
    CONSTRAINT tenant_invitations_accepted_or_revoked CHECK (accepted_at IS NULL OR revoked_at IS NULL)
);
-- The open invitations of a tenant (listing, the members limit, superseding by email).
CREATE INDEX IF NOT EXISTS tenant_invitations_open_idx
    ON public.tenant_invitations (tenant_id, email) WHERE accepted_at IS NULL AND revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS tenant_invitations_created_idx
    ON public.tenant_invitations (tenant_id, created_at, id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_members', 'tenant_invitations'] LOOP
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON public.%I', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON public.%I
            USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.tenant_members TO edgefront_app;
-- Invitations are never deleted by the app: revoking and accepting are timestamps.
GRANT SELECT, INSERT, UPDATE ON public.tenant_invitations TO edgefront_app;

-- Tenants: soft deletion (platform_purge removes the row after a grace period) and a version
-- for If-Match, bumped by every update through the functions. No new grant: the app role
-- changes tenants only through SECURITY DEFINER functions.
ALTER TABLE public.tenants
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz,
    ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;
-- Tenants deleted before this migration become purgeable from their last change. (A tenant
-- seeded as 'deleted' without deleted_at is simply never purged.)
UPDATE public.tenants SET deleted_at = updated_at WHERE status = 'deleted' AND deleted_at IS NULL;
ALTER TABLE public.tenants DROP CONSTRAINT IF EXISTS tenants_deleted_at_status;
ALTER TABLE public.tenants ADD CONSTRAINT tenants_deleted_at_status
    CHECK (deleted_at IS NULL OR status = 'deleted');
-- platform_purge's scan.
CREATE INDEX IF NOT EXISTS tenants_deleted_idx ON public.tenants (deleted_at) WHERE status = 'deleted';

-- Domains: a tenant claims a hostname (pending) and proves it with a DNS TXT record
-- (`_edgefront-challenge.<hostname>` = `edgefront-verify=<verification_token>`). Several
-- tenants may claim one hostname; only one can hold it verified, and only verified domains
-- resolve to a tenant (resolve_tenant_by_domain). Domains that existed before are verified.
-- A row inserted without verified_at (a seed, say) is a pending claim: set verified_at for a
-- domain that must resolve.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = 'public' AND table_name = 'tenant_domains'
                     AND column_name = 'verified_at') THEN
        ALTER TABLE public.tenant_domains ADD COLUMN verified_at timestamptz;
        UPDATE public.tenant_domains SET verified_at = created_at;
    END IF;
END
$$;
-- domain_add stores the edge's token; the default (a volatile one, so each existing row gets
-- its own) only gives rows written otherwise a token, so every domain document has one.
ALTER TABLE public.tenant_domains ADD COLUMN IF NOT EXISTS verification_token text NOT NULL
    DEFAULT replace(gen_random_uuid()::text, '-', '');
ALTER TABLE public.tenant_domains DROP CONSTRAINT IF EXISTS tenant_domains_token_len;
ALTER TABLE public.tenant_domains ADD CONSTRAINT tenant_domains_token_len
    CHECK (char_length(verification_token) BETWEEN 8 AND 256);

-- The primary key becomes (tenant_id, hostname): a hostname may be claimed by several tenants.
DO $$
BEGIN
    IF (SELECT array_agg(a.attname::text ORDER BY k.n)
        FROM pg_constraint c
        CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k (attnum, n)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.conrelid = 'public.tenant_domains'::regclass AND c.contype = 'p')
       IS DISTINCT FROM ARRAY['tenant_id', 'hostname'] THEN
        ALTER TABLE public.tenant_domains DROP CONSTRAINT IF EXISTS tenant_domains_pkey;
        ALTER TABLE public.tenant_domains ADD CONSTRAINT tenant_domains_pkey PRIMARY KEY (tenant_id, hostname);
    END IF;
END
$$;
-- The primary key now leads with tenant_id.
DROP INDEX IF EXISTS public.tenant_domains_tenant_id_idx;
-- One verified holder per hostname; also the index of resolve_tenant_by_domain.
CREATE UNIQUE INDEX IF NOT EXISTS tenant_domains_verified_hostname_key
    ON public.tenant_domains (hostname) WHERE verified_at IS NOT NULL;

-- Reading and removing its own domains is the app role's; adding a claim and marking it
-- verified are not: a verified row decides which tenant a hostname serves, so it is written
-- only by domain_add and domain_verify (SECURITY DEFINER), after their cross-tenant checks.
GRANT SELECT, DELETE ON public.tenant_domains TO edgefront_app;

-- Members per tenant (NULL: unlimited); tenants.settings.limits.max_members overrides it.
-- Active members and pending invitations count against it.
ALTER TABLE public.tier_limits ADD COLUMN IF NOT EXISTS max_members integer
    CONSTRAINT tier_limits_members_nonneg CHECK (max_members >= 0);
UPDATE public.tier_limits SET max_members = CASE tier
    WHEN 'basic' THEN 5 WHEN 'premium' THEN 50 ELSE NULL END;
