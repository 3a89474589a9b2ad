-- 0004_chat: conversations and messages, per-tenant AI token quotas with reservations, and
-- the usage log. Two functions carry the whole accounting (chat_begin, chat_finish); they are
-- in migrations/functions/30_chat.sql, with how reservations are settled.

ALTER TABLE public.tier_limits ADD COLUMN IF NOT EXISTS ai_monthly_tokens bigint
    CONSTRAINT tier_limits_ai_tokens_nonneg CHECK (ai_monthly_tokens >= 0);
UPDATE public.tier_limits SET ai_monthly_tokens = CASE tier
    WHEN 'basic' THEN 50000 WHEN 'premium' THEN 1000000 ELSE 20000000 END
WHERE ai_monthly_tokens IS NULL;

CREATE TABLE IF NOT EXISTS public.conversations (
    tenant_id   uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    owner_kind  text NOT NULL CONSTRAINT conversations_owner_kind CHECK (owner_kind IN ('user', 'visitor')),
    owner_id    text NOT NULL CONSTRAINT conversations_owner_len CHECK (char_length(owner_id) BETWEEN 1 AND 200),
    title       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS conversations_owner_idx
    ON public.conversations (tenant_id, owner_kind, owner_id, updated_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS public.messages (
    tenant_id         uuid NOT NULL,
    conversation_id   uuid NOT NULL,
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    role              text NOT NULL CONSTRAINT messages_role CHECK (role IN ('user', 'assistant')),
    content           text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    status            text NOT NULL DEFAULT 'complete' CONSTRAINT messages_status CHECK (status IN ('complete', 'failed')),
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES public.conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS messages_conversation_idx
    ON public.messages (tenant_id, conversation_id, created_at, id);

-- One row per tenant and month: `used + reserved` never exceeds `limit_tokens` (the CHECK makes
-- Postgres itself refuse any write that would).
CREATE TABLE IF NOT EXISTS public.ai_quota (
    tenant_id    uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    period       date NOT NULL,
    limit_tokens bigint NOT NULL CONSTRAINT ai_quota_limit_nonneg CHECK (limit_tokens >= 0),
    reserved     bigint NOT NULL DEFAULT 0 CONSTRAINT ai_quota_reserved_nonneg CHECK (reserved >= 0),
    used         bigint NOT NULL DEFAULT 0 CONSTRAINT ai_quota_used_nonneg CHECK (used >= 0),
    CONSTRAINT ai_quota_within_limit CHECK (used + reserved <= limit_tokens),
    PRIMARY KEY (tenant_id, period)
);

CREATE TABLE IF NOT EXISTS public.ai_reservations (
    tenant_id       uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    period          date NOT NULL,
    conversation_id uuid NOT NULL,
    tokens          bigint NOT NULL CONSTRAINT ai_reservations_tokens_pos CHECK (tokens > 0),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    settled_at      timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS ai_reservations_open_idx
    ON public.ai_reservations (tenant_id, created_at) WHERE settled_at IS NULL;

-- One row per completion attempt, written when its reservation settles (exactly once).
CREATE TABLE IF NOT EXISTS public.ai_usage_log (
    tenant_id         uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    reservation_id    uuid NOT NULL,
    conversation_id   uuid NOT NULL,
    owner_kind        text NOT NULL,
    owner_id          text NOT NULL,
    model             text NOT NULL,
    outcome           text NOT NULL CONSTRAINT ai_usage_outcome CHECK (outcome IN
                      ('ok', 'provider_error', 'timeout', 'client_disconnect', 'abandoned')),
    reserved_tokens   bigint NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    charged_tokens    bigint NOT NULL DEFAULT 0,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, reservation_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['conversations', 'messages', 'ai_quota', 'ai_reservations', 'ai_usage_log'] LOOP
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON public.%I', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON public.%I
            USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON public.conversations, public.messages, public.ai_quota,
    public.ai_reservations TO edgefront_app;
GRANT SELECT, INSERT ON public.ai_usage_log TO edgefront_app;
