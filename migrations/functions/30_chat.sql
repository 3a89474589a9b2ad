-- functions/30_chat: the AI chat accounting (tables: migrations/0004_chat.sql). Two functions
-- carry it, each one statement of one batch:
--   chat_begin  — checks the conversation's owner and, for anonymous visitors, their hourly
--                 caps and monthly budget, reserves quota atomically (both under the quota
--                 row's lock, counting reservations of every outcome), and returns the
--                 conversation's memory and catalog grounding;
--   chat_finish — settles a reservation exactly once: stores the messages (on success),
--                 moves actual usage into `used`, releases the rest, logs the completion.
-- A reservation that is never settled (the edge died mid-stream) is released as `abandoned`
-- by the tenant's next chat_begin after RESERVATION_TTL, so quota is never lost for good.
--
-- A repeatable file (see migrations/README.md): re-applied whenever its text changes.

-- Settles one reservation (internal). Returns false when it was already settled.
CREATE OR REPLACE FUNCTION public.ai_settle(p_reservation uuid, p_outcome text, p_owner_kind text,
    p_owner_id text, p_model text, p_prompt integer, p_completion integer, p_error text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_res     public.ai_reservations;
    v_charged bigint;
BEGIN
    UPDATE public.ai_reservations SET settled_at = clock_timestamp()
    WHERE id = p_reservation AND settled_at IS NULL
    RETURNING * INTO v_res;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Never charge more than was reserved (the reservation includes max_tokens, so only a
    -- provider that miscounts could report more); the log keeps the reported numbers.
    v_charged := least(greatest(coalesce(p_prompt, 0) + coalesce(p_completion, 0), 0), v_res.tokens);
    UPDATE public.ai_quota
    SET reserved = reserved - v_res.tokens, used = used + v_charged,
        visitor_reserved = visitor_reserved - CASE WHEN v_res.owner_kind = 'visitor' THEN v_res.tokens ELSE 0 END,
        visitor_used = visitor_used + CASE WHEN v_res.owner_kind = 'visitor' THEN v_charged ELSE 0 END
    WHERE period = v_res.period;
    INSERT INTO public.ai_usage_log (tenant_id, reservation_id, conversation_id, owner_kind, owner_id,
        model, outcome, reserved_tokens, prompt_tokens, completion_tokens, charged_tokens, error)
    VALUES (v_res.tenant_id, v_res.id, v_res.conversation_id, p_owner_kind, p_owner_id, p_model,
        p_outcome, v_res.tokens, coalesce(p_prompt, 0), coalesce(p_completion, 0), v_charged, p_error);
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION public.ai_settle(uuid, text, text, text, text, integer, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ai_settle(uuid, text, text, text, text, integer, integer, text) TO edgefront_app;

-- Starts a turn. p_client: the visitor's client key (an HMAC of their IP; NULL for members or
-- when the edge does not know the IP). p_limits: {"monthly_tokens": n|null (tier default),
-- "visitor_messages_per_hour": n, "visitor_messages_per_ip_per_hour": n,
-- "visitor_tenant_messages_per_hour": n, "visitor_monthly_tokens": n|null (20% of the month's),
-- "visitor_monthly_turns": n|null (unlimited), "memory_messages": n, "grounding_items": n}.
-- Outcomes: ok {conversation_id, reservation_id, memory, grounding, quota},
-- not_found (no such conversation for this owner), quota_exhausted {scope: tenant|visitors,
-- resets_at, retry_after, limit, used, reserved}, visitor_limit {scope: visitor|client|tenant,
-- retry_after}.
--
-- Visitor limits count reservations (every outcome: answered, failed, disconnected, abandoned),
-- never stored messages, and are checked under the lock of the tenant's quota row, which is held
-- until the batch commits with the new reservation: parallel turns queue there, and each one
-- counts those committed before it, so none can overshoot.
CREATE OR REPLACE FUNCTION public.chat_begin(p_owner_kind text, p_owner_id text, p_client text,
    p_conversation uuid, p_message text, p_estimate bigint, p_words text[], p_limits jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant  uuid := public.current_tenant_id();
    v_visitor boolean := p_owner_kind = 'visitor';
    v_period  date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    v_resets  timestamptz := (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    v_limit   bigint;
    v_vlimit  bigint;
    v_quota   public.ai_quota;
    v_conv    uuid := p_conversation;
    v_res     uuid;
    v_stale   record;
    v_count   bigint;
    v_oldest  timestamptz;
    v_memory  jsonb;
    v_ground  jsonb;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    IF v_conv IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM public.conversations
        WHERE id = v_conv AND owner_kind = p_owner_kind AND owner_id = p_owner_id) THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;

    -- Release reservations abandoned by edges that died mid-stream.
    FOR v_stale IN
        SELECT r.id, coalesce(r.owner_kind, c.owner_kind, 'user') AS owner_kind,
               coalesce(r.owner_id, c.owner_id, '?') AS owner_id
        FROM public.ai_reservations r
        LEFT JOIN public.conversations c ON c.tenant_id = r.tenant_id AND c.id = r.conversation_id
        WHERE r.settled_at IS NULL AND r.created_at < now() - interval '15 minutes'
        FOR UPDATE OF r SKIP LOCKED
    LOOP
        PERFORM public.ai_settle(v_stale.id, 'abandoned', v_stale.owner_kind, v_stale.owner_id, '', 0, 0, 'never settled');
    END LOOP;

    SELECT coalesce((p_limits->>'monthly_tokens')::bigint, l.ai_monthly_tokens, 0) INTO v_limit
    FROM public.tenants t JOIN public.tier_limits l ON l.tier = t.tier WHERE t.id = v_tenant;
    INSERT INTO public.ai_quota (tenant_id, period, limit_tokens)
    VALUES (v_tenant, v_period, coalesce(v_limit, 0))
    ON CONFLICT (tenant_id, period) DO NOTHING;
    -- The critical section: from here to the batch's commit, one turn of this tenant at a time.
    SELECT * INTO v_quota FROM public.ai_quota WHERE period = v_period FOR UPDATE;

    IF v_visitor THEN
        -- Hourly windows: this visitor (cookie), their client (IP), all the tenant's visitors.
        SELECT count(*), min(created_at) INTO v_count, v_oldest FROM public.ai_reservations
        WHERE owner_kind = 'visitor' AND owner_id = p_owner_id AND created_at > now() - interval '1 hour';
        IF v_count >= coalesce((p_limits->>'visitor_messages_per_hour')::bigint, 20) THEN
            RETURN jsonb_build_object('outcome', 'visitor_limit', 'scope', 'visitor',
                'retry_after', greatest(1, ceil(extract(epoch FROM coalesce(v_oldest, now()) + interval '1 hour' - now())))::bigint);
        END IF;
        IF p_client IS NOT NULL THEN
            SELECT count(*), min(created_at) INTO v_count, v_oldest FROM public.ai_reservations
            WHERE client_hash = p_client AND created_at > now() - interval '1 hour';
            IF v_count >= coalesce((p_limits->>'visitor_messages_per_ip_per_hour')::bigint, 30) THEN
                RETURN jsonb_build_object('outcome', 'visitor_limit', 'scope', 'client',
                    'retry_after', greatest(1, ceil(extract(epoch FROM coalesce(v_oldest, now()) + interval '1 hour' - now())))::bigint);
            END IF;
        END IF;
        SELECT count(*), min(created_at) INTO v_count, v_oldest FROM public.ai_reservations
        WHERE owner_kind = 'visitor' AND created_at > now() - interval '1 hour';
        IF v_count >= coalesce((p_limits->>'visitor_tenant_messages_per_hour')::bigint, 500) THEN
            RETURN jsonb_build_object('outcome', 'visitor_limit', 'scope', 'tenant',
                'retry_after', greatest(1, ceil(extract(epoch FROM coalesce(v_oldest, now()) + interval '1 hour' - now())))::bigint);
        END IF;
        -- The visitors' monthly budget inside the tenant's: turns, and tokens (reserved + used).
        v_vlimit := coalesce((p_limits->>'visitor_monthly_tokens')::bigint, v_quota.limit_tokens / 5);
        IF v_quota.visitor_turns >= coalesce((p_limits->>'visitor_monthly_turns')::bigint, v_quota.visitor_turns + 1)
           OR v_quota.visitor_used + v_quota.visitor_reserved + p_estimate > v_vlimit THEN
            RETURN jsonb_build_object('outcome', 'quota_exhausted', 'scope', 'visitors',
                'resets_at', to_char(v_resets AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'retry_after', greatest(1, extract(epoch FROM v_resets - now())::bigint),
                'limit', v_vlimit, 'used', v_quota.visitor_used, 'reserved', v_quota.visitor_reserved);
        END IF;
    END IF;

    -- The reservation: one conditional update of the locked row.
    UPDATE public.ai_quota
    SET reserved = reserved + p_estimate,
        visitor_reserved = visitor_reserved + CASE WHEN v_visitor THEN p_estimate ELSE 0 END,
        visitor_turns = visitor_turns + CASE WHEN v_visitor THEN 1 ELSE 0 END
    WHERE period = v_period AND used + reserved + p_estimate <= limit_tokens
    RETURNING * INTO v_quota;
    IF NOT FOUND THEN
        SELECT * INTO v_quota FROM public.ai_quota WHERE period = v_period;
        RETURN jsonb_build_object('outcome', 'quota_exhausted', 'scope', 'tenant',
            'resets_at', to_char(v_resets AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'retry_after', greatest(1, extract(epoch FROM v_resets - now())::bigint),
            'limit', v_quota.limit_tokens, 'used', v_quota.used, 'reserved', v_quota.reserved);
    END IF;

    IF v_conv IS NULL THEN
        INSERT INTO public.conversations (tenant_id, owner_kind, owner_id, title)
        VALUES (v_tenant, p_owner_kind, p_owner_id, left(regexp_replace(p_message, '\s+', ' ', 'g'), 80))
        RETURNING id INTO v_conv;
    END IF;
    INSERT INTO public.ai_reservations (tenant_id, period, conversation_id, tokens, owner_kind, owner_id, client_hash)
    VALUES (v_tenant, v_period, v_conv, p_estimate, p_owner_kind, p_owner_id,
            CASE WHEN v_visitor THEN p_client END)
    RETURNING id INTO v_res;

    -- Memory: the newest complete messages, oldest first.
    SELECT coalesce(jsonb_agg(jsonb_build_object('role', m.role, 'content', m.content)
                              ORDER BY m.created_at, m.id), '[]'::jsonb)
    INTO v_memory
    FROM (SELECT * FROM public.messages
          WHERE conversation_id = v_conv AND status = 'complete'
          ORDER BY created_at DESC, id DESC
          LIMIT coalesce((p_limits->>'memory_messages')::int, 20)) m;

    -- Grounding: active items ranked by how many of the message's words they contain.
    SELECT coalesce(jsonb_agg(g.doc ORDER BY g.score DESC, g.name), '[]'::jsonb) INTO v_ground
    FROM (
        SELECT i.name,
               (SELECT count(*) FROM unnest(p_words) w WHERE i.search_text LIKE '%' || w || '%') AS score,
               jsonb_build_object('id', i.id, 'sku', i.sku, 'name', i.name, 'price', i.price::text,
                   'currency', i.currency, 'category', i.category, 'in_stock', i.inventory IS NULL OR i.inventory > 0,
                   'description', left(i.description, 300)) AS doc
        FROM public.catalog_items i
        WHERE i.status = 'active' AND cardinality(p_words) > 0
          AND i.search_text LIKE ANY (SELECT '%' || w || '%' FROM unnest(p_words) w)
        ORDER BY 2 DESC, i.name
        LIMIT coalesce((p_limits->>'grounding_items')::int, 5)
    ) g;

    RETURN jsonb_build_object('outcome', 'ok', 'conversation_id', v_conv, 'reservation_id', v_res,
        'memory', v_memory, 'grounding', v_ground,
        'quota', jsonb_build_object('limit', v_quota.limit_tokens, 'used', v_quota.used,
                                    'reserved', v_quota.reserved));
END
$$;

REVOKE ALL ON FUNCTION public.chat_begin(text, text, text, uuid, text, bigint, text[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.chat_begin(text, text, text, uuid, text, bigint, text[], jsonb) TO edgefront_app;

-- Ends a turn: settles the reservation once; on `ok` stores both messages. A repeated call for
-- the same reservation changes nothing and returns {"outcome":"already_settled"}.
CREATE OR REPLACE FUNCTION public.chat_finish(p_reservation uuid, p_conversation uuid,
    p_owner_kind text, p_owner_id text, p_outcome text, p_model text, p_user_message text,
    p_answer text, p_prompt integer, p_completion integer, p_error text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_user uuid;
    v_asst uuid;
BEGIN
    IF NOT public.ai_settle(p_reservation, p_outcome, p_owner_kind, p_owner_id, p_model,
                            p_prompt, p_completion, p_error) THEN
        RETURN jsonb_build_object('outcome', 'already_settled');
    END IF;
    IF p_outcome = 'ok' THEN
        INSERT INTO public.messages (tenant_id, conversation_id, role, content, prompt_tokens)
        VALUES (public.current_tenant_id(), p_conversation, 'user', p_user_message, coalesce(p_prompt, 0))
        RETURNING id INTO v_user;
        INSERT INTO public.messages (tenant_id, conversation_id, role, content, completion_tokens)
        VALUES (public.current_tenant_id(), p_conversation, 'assistant', p_answer, coalesce(p_completion, 0))
        RETURNING id INTO v_asst;
        UPDATE public.conversations SET updated_at = clock_timestamp() WHERE id = p_conversation;
    END IF;
    RETURN jsonb_build_object('outcome', 'settled', 'user_message_id', v_user,
                              'assistant_message_id', v_asst);
END
$$;

REVOKE ALL ON FUNCTION public.chat_finish(uuid, uuid, text, text, text, text, text, text, integer, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.chat_finish(uuid, uuid, text, text, text, text, text, text, integer, integer, text) TO edgefront_app;
