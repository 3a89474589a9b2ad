-- 0009_visitor_budget: what anonymous storefront visitors may spend of a tenant's AI quota.
-- Visitor limits count reservations (every turn that reserved, whatever its outcome: answered,
-- failed, disconnected, abandoned), not stored messages, so failed or parallel turns cannot
-- slip past them; chat_begin (functions/30_chat.sql) checks them under the quota row's lock.

-- Who a reservation was for, and the visitor's client (an HMAC of the client IP, never the
-- address itself). NULL on reservations made before this migration.
ALTER TABLE public.ai_reservations ADD COLUMN IF NOT EXISTS owner_kind text
    CONSTRAINT ai_reservations_owner_kind CHECK (owner_kind IN ('user', 'visitor'));
ALTER TABLE public.ai_reservations ADD COLUMN IF NOT EXISTS owner_id text;
ALTER TABLE public.ai_reservations ADD COLUMN IF NOT EXISTS client_hash text
    CONSTRAINT ai_reservations_client_hash_len CHECK (char_length(client_hash) <= 64);

-- The hourly windows: per visitor, per client, and all visitors of the tenant.
CREATE INDEX IF NOT EXISTS ai_reservations_visitor_idx
    ON public.ai_reservations (tenant_id, owner_id, created_at) WHERE owner_kind = 'visitor';
CREATE INDEX IF NOT EXISTS ai_reservations_client_idx
    ON public.ai_reservations (tenant_id, client_hash, created_at) WHERE client_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS ai_reservations_visitors_idx
    ON public.ai_reservations (tenant_id, created_at) WHERE owner_kind = 'visitor';

-- The visitors' share of the month, inside the tenant's own (`reserved` and `used` include it).
ALTER TABLE public.ai_quota ADD COLUMN IF NOT EXISTS visitor_reserved bigint NOT NULL DEFAULT 0
    CONSTRAINT ai_quota_visitor_reserved_nonneg CHECK (visitor_reserved >= 0);
ALTER TABLE public.ai_quota ADD COLUMN IF NOT EXISTS visitor_used bigint NOT NULL DEFAULT 0
    CONSTRAINT ai_quota_visitor_used_nonneg CHECK (visitor_used >= 0);
-- Visitor turns reserved this month (every outcome counts).
ALTER TABLE public.ai_quota ADD COLUMN IF NOT EXISTS visitor_turns bigint NOT NULL DEFAULT 0
    CONSTRAINT ai_quota_visitor_turns_nonneg CHECK (visitor_turns >= 0);

-- chat_begin takes the visitor's client hash (functions/30_chat.sql defines the new one).
DROP FUNCTION IF EXISTS public.chat_begin(text, text, uuid, text, bigint, text[], jsonb);
