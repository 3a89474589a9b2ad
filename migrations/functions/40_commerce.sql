-- functions/40_commerce: storefront visits, checkout (orders and donations), order status
-- transitions and the commerce reports. Tables: migrations/0006_commerce.sql.
--
-- Each writer is one statement of the request's one batch (one transaction, READ COMMITTED,
-- opened with set_config('app.current_tenant', …, true)) and returns a jsonb outcome; nothing
-- is written unless the outcome says so. All functions are SECURITY INVOKER: they run as
-- `edgefront_app`, under row-level security.
--
-- Concurrency. Waits happen in one order, so they cannot deadlock:
--   checkout:         advisory lock on (tenant, Idempotency-Key)
--                     → advisory lock on the tenant's orders (only when a monthly limit applies)
--                     → the catalog rows, FOR UPDATE in id order
--                     → the tenant's order_counters row (the number)
--   order_transition: the order row (FOR UPDATE) → on cancel, the catalog rows in id order.
-- After each wait the next statement takes a new snapshot (READ COMMITTED), so it sees what
-- the transaction it waited for committed: a retried key finds its order, the month's count
-- includes the previous checkout, inventory is the current one.
--
-- A repeatable file (see migrations/README.md): re-applied whenever its text changes.

-- An order (or donation) as the API shows it, to admins and to the visitor who placed it.
CREATE OR REPLACE FUNCTION public.order_json(o public.orders) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', o.id, 'number', o.number, 'kind', o.kind, 'status', o.status,
        'currency', o.currency, 'subtotal', o.subtotal::text, 'total', o.total::text,
        'customer', jsonb_build_object('email', o.customer_email, 'name', o.customer_name),
        'shipping_address', o.shipping_address, 'visit_id', o.visit_id,
        'lines', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'line', l.line, 'kind', l.kind, 'item_id', l.item_id, 'sku', l.sku,
                       'name', l.name, 'unit_price', l.unit_price::text, 'quantity', l.quantity,
                       'line_total', l.line_total::text, 'campaign', l.campaign)
                   ORDER BY l.line)
            FROM public.order_items l
            WHERE l.tenant_id = o.tenant_id AND l.order_id = o.id), '[]'::jsonb),
        'version', o.version,
        'created_at', public.iso_utc(o.created_at),
        'updated_at', public.iso_utc(o.updated_at))
$$;

GRANT EXECUTE ON FUNCTION public.order_json(public.orders) TO edgefront_app;

-- Records a storefront visit. p_visit: {path, referrer?, utm_source?, utm_medium?,
-- utm_campaign?, utm_term?, utm_content?} (validated by the edge). At most p_per_hour visits
-- of one visitor in any hour. Outcomes:
--   {"outcome":"recorded","visit":{"id","created_at"}}
--   {"outcome":"rate_limited","retry_after":s}  (seconds until one more would be accepted, ≥ 1)
CREATE OR REPLACE FUNCTION public.visit_record(p_id uuid, p_visitor text, p_visit jsonb, p_per_hour integer)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid := public.current_tenant_id();
    v_now    timestamptz;
    v_count  bigint;
    v_expiry timestamptz;
    v_row    public.visits;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    -- One request per visitor at a time from here: parallel requests cannot overshoot.
    PERFORM pg_advisory_xact_lock(hashtextextended('visit:' || v_tenant::text || ':' || p_visitor, 0));
    v_now := clock_timestamp();
    SELECT count(*) INTO v_count FROM public.visits
    WHERE visitor_id = p_visitor AND created_at > v_now - interval '1 hour';
    IF v_count >= p_per_hour THEN
        -- One more fits once this visit (the oldest, unless the limit was lowered) is an hour old.
        SELECT created_at + interval '1 hour' INTO v_expiry FROM public.visits
        WHERE visitor_id = p_visitor AND created_at > v_now - interval '1 hour'
        ORDER BY created_at
        OFFSET greatest(v_count - p_per_hour, 0) LIMIT 1;
        RETURN jsonb_build_object('outcome', 'rate_limited', 'retry_after',
            greatest(1, coalesce(ceil(extract(epoch FROM v_expiry - v_now)), 3600))::bigint);
    END IF;
    INSERT INTO public.visits (tenant_id, id, visitor_id, path, referrer, utm_source, utm_medium,
                               utm_campaign, utm_term, utm_content)
    VALUES (v_tenant, p_id, p_visitor, p_visit->>'path', p_visit->>'referrer',
            p_visit->>'utm_source', p_visit->>'utm_medium', p_visit->>'utm_campaign',
            p_visit->>'utm_term', p_visit->>'utm_content')
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('outcome', 'recorded',
        'visit', jsonb_build_object('id', v_row.id, 'created_at', public.iso_utc(v_row.created_at)));
END
$$;

REVOKE ALL ON FUNCTION public.visit_record(uuid, text, jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.visit_record(uuid, text, jsonb, integer) TO edgefront_app;

-- Places an order or a donation. p_id: the new order's id; p_key/p_hash: the Idempotency-Key
-- and a hash of the request body; p_visitor: the storefront visitor. p_request (validated by
-- the edge): {"items":[{"item_id","quantity"}]} or {"donation":{"amount","campaign"?}}, with
-- "customer":{"email","name"}, "shipping_address"?, "visit_id"?. Outcomes:
--   {"outcome":"created","order":{…}}
--   {"outcome":"replayed","order":{…}}   same key and body: the order as it was created
--   {"outcome":"key_reused"}             same key, another body
--   {"outcome":"tier_limit","limit":n,"count":n}   orders created this calendar month (UTC)
--   {"outcome":"unavailable","items":[uuid…]}      unknown, not active, or not in the order's
--                                                   currency (the first available line's)
--   {"outcome":"out_of_stock","items":[{"item_id","requested","available"}…]}
--   {"outcome":"donations_disabled"}
--   {"outcome":"donation_out_of_range","minimum":"1.000","maximum":"1000000.000"}
--   {"outcome":"unknown_campaign","campaigns":[…]}
-- Only "created" writes anything: the order, its lines, the taken inventory, the tenant's
-- counter and one 'order.created' outbox row, all in this transaction.
CREATE OR REPLACE FUNCTION public.checkout(p_id uuid, p_key text, p_hash text, p_visitor text, p_request jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant   uuid := public.current_tenant_id();
    v_settings jsonb;
    v_prior    public.orders;
    v_doc      jsonb;
    v_limit    integer;
    v_count    bigint;
    v_kind     text;
    v_ids      uuid[];
    v_qty      integer[];
    v_currency text;
    v_refused  jsonb;
    v_total    numeric;
    v_don      jsonb;
    v_amount   numeric;
    v_min      numeric;
    v_max      numeric;
    v_campaign text;
    v_visit    uuid;
    v_number   integer;
    v_row      public.orders;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'app.current_tenant is not set' USING ERRCODE = '42501';
    END IF;
    IF p_key IS NULL OR p_hash IS NULL THEN
        RAISE EXCEPTION 'checkout needs an idempotency key and a request hash' USING ERRCODE = '22004';
    END IF;

    -- Retries of one key queue here; the second finds the first's order.
    PERFORM pg_advisory_xact_lock(hashtextextended('checkout:' || v_tenant::text || ':' || p_key, 0));
    SELECT * INTO v_prior FROM public.orders WHERE idempotency_key = p_key;
    IF FOUND THEN
        IF v_prior.request_hash IS DISTINCT FROM p_hash THEN
            RETURN jsonb_build_object('outcome', 'key_reused');
        END IF;
        -- The first response: the document written with the order (its 'order.created' event);
        -- the current document if that event is gone.
        SELECT payload INTO v_doc FROM public.outbox
        WHERE order_id = v_prior.id AND event = 'order.created'
        ORDER BY id LIMIT 1;
        RETURN jsonb_build_object('outcome', 'replayed', 'order', coalesce(v_doc, public.order_json(v_prior)));
    END IF;

    SELECT t.settings, coalesce((t.settings #>> '{limits,max_orders_per_month}')::integer, l.max_orders_per_month)
    INTO v_settings, v_limit
    FROM public.tenants t JOIN public.tier_limits l ON l.tier = t.tier
    WHERE t.id = v_tenant;
    IF v_limit IS NOT NULL THEN
        -- One checkout per tenant at a time past this point, until the transaction ends.
        PERFORM pg_advisory_xact_lock(hashtextextended('orders:' || v_tenant::text, 0));
        SELECT count(*) INTO v_count FROM public.orders
        WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        IF v_count >= v_limit THEN
            RETURN jsonb_build_object('outcome', 'tier_limit', 'limit', v_limit, 'count', v_count);
        END IF;
    END IF;

    IF jsonb_typeof(p_request->'items') = 'array' THEN
        v_kind := 'order';
        SELECT array_agg((e->>'item_id')::uuid ORDER BY n), array_agg((e->>'quantity')::integer ORDER BY n)
        INTO v_ids, v_qty
        FROM jsonb_array_elements(p_request->'items') WITH ORDINALITY AS r (e, n);
        IF v_ids IS NULL THEN
            RAISE EXCEPTION 'checkout needs at least one item' USING ERRCODE = '22023';
        END IF;
        -- Lock the items in id order: concurrent checkouts of overlapping items cannot deadlock,
        -- and from here their inventory is ours until commit.
        PERFORM 1 FROM public.catalog_items WHERE id = ANY (v_ids) ORDER BY id FOR UPDATE;

        SELECT c.currency INTO v_currency
        FROM unnest(v_ids) WITH ORDINALITY AS r (item_id, line)
        JOIN public.catalog_items c ON c.id = r.item_id
        WHERE c.status = 'active'
        ORDER BY r.line LIMIT 1;
        SELECT jsonb_agg(to_jsonb(r.item_id) ORDER BY r.line) INTO v_refused
        FROM unnest(v_ids) WITH ORDINALITY AS r (item_id, line)
        LEFT JOIN public.catalog_items c ON c.id = r.item_id
        WHERE c.id IS NULL OR c.status <> 'active' OR c.currency IS DISTINCT FROM v_currency;
        IF v_refused IS NOT NULL THEN
            RETURN jsonb_build_object('outcome', 'unavailable', 'items', v_refused);
        END IF;

        -- Quantities summed per item, should an item ever come twice.
        SELECT jsonb_agg(jsonb_build_object('item_id', r.item_id, 'requested', r.quantity,
                                            'available', c.inventory) ORDER BY r.first_line)
        INTO v_refused
        FROM (SELECT item_id, sum(quantity) AS quantity, min(line) AS first_line
              FROM unnest(v_ids, v_qty) WITH ORDINALITY AS u (item_id, quantity, line)
              GROUP BY item_id) r
        JOIN public.catalog_items c ON c.id = r.item_id
        WHERE c.inventory IS NOT NULL AND c.inventory < r.quantity;
        IF v_refused IS NOT NULL THEN
            RETURN jsonb_build_object('outcome', 'out_of_stock', 'items', v_refused);
        END IF;

        -- Prices come from the catalog, never from the client.
        SELECT sum(c.price * u.quantity) INTO v_total
        FROM unnest(v_ids, v_qty) AS u (item_id, quantity)
        JOIN public.catalog_items c ON c.id = u.item_id;
    ELSIF jsonb_typeof(p_request->'donation') = 'object' THEN
        v_kind := 'donation';
        v_don := coalesce(v_settings->'donations', '{}'::jsonb);
        IF v_don->'enabled' IS DISTINCT FROM 'true'::jsonb THEN
            RETURN jsonb_build_object('outcome', 'donations_disabled');
        END IF;
        v_amount := (p_request #>> '{donation,amount}')::numeric;
        v_min := coalesce((v_don->>'minimum')::numeric, 1);
        v_max := coalesce((v_don->>'maximum')::numeric, 1000000);
        IF v_amount IS NULL OR v_amount < v_min OR v_amount > v_max THEN
            RETURN jsonb_build_object('outcome', 'donation_out_of_range',
                'minimum', round(v_min, 3)::text, 'maximum', round(v_max, 3)::text);
        END IF;
        v_campaign := p_request #>> '{donation,campaign}';
        IF v_campaign IS NOT NULL AND jsonb_typeof(v_don->'campaigns') = 'array'
           AND NOT (v_don->'campaigns' ? v_campaign) THEN
            RETURN jsonb_build_object('outcome', 'unknown_campaign', 'campaigns', v_don->'campaigns');
        END IF;
        v_currency := coalesce(v_don->>'currency', v_settings->>'currency', 'USD');
        v_total := v_amount;
    ELSE
        RAISE EXCEPTION 'checkout needs "items" or "donation"' USING ERRCODE = '22023';
    END IF;

    -- A visit of another tenant, or none, is dropped: attribution is best effort.
    IF (p_request->>'visit_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        SELECT id INTO v_visit FROM public.visits WHERE id = (p_request->>'visit_id')::uuid;
    END IF;

    -- Everything below writes; nothing above did.
    IF v_kind = 'order' THEN
        UPDATE public.catalog_items c SET
            inventory  = c.inventory - r.quantity,
            version    = c.version + 1,
            updated_at = clock_timestamp()
        FROM (SELECT item_id, sum(quantity)::integer AS quantity
              FROM unnest(v_ids, v_qty) AS u (item_id, quantity)
              GROUP BY item_id) r
        WHERE c.id = r.item_id AND c.inventory IS NOT NULL;
    END IF;

    INSERT INTO public.order_counters AS oc (tenant_id, last_number) VALUES (v_tenant, 1001)
    ON CONFLICT (tenant_id) DO UPDATE SET last_number = oc.last_number + 1
    RETURNING last_number INTO v_number;

    INSERT INTO public.orders (tenant_id, id, number, kind, customer_email, customer_name,
        shipping_address, currency, subtotal, total, visit_id, visitor_id, idempotency_key, request_hash)
    VALUES (v_tenant, p_id, v_number, v_kind, p_request #>> '{customer,email}',
        p_request #>> '{customer,name}',
        CASE WHEN jsonb_typeof(p_request->'shipping_address') = 'object' THEN p_request->'shipping_address' END,
        v_currency, v_total, v_total, v_visit, p_visitor, p_key, p_hash)
    RETURNING * INTO v_row;

    IF v_kind = 'order' THEN
        INSERT INTO public.order_items (tenant_id, order_id, line, kind, item_id, sku, name,
                                        unit_price, quantity, line_total)
        SELECT v_tenant, p_id, r.line, 'item', c.id, c.sku, c.name, c.price, r.quantity, c.price * r.quantity
        FROM unnest(v_ids, v_qty) WITH ORDINALITY AS r (item_id, quantity, line)
        JOIN public.catalog_items c ON c.id = r.item_id;
    ELSE
        INSERT INTO public.order_items (tenant_id, order_id, line, kind, name, unit_price, quantity,
                                        line_total, campaign)
        VALUES (v_tenant, p_id, 1, 'donation',
                CASE WHEN v_campaign IS NULL THEN 'Donation' ELSE 'Donation: ' || v_campaign END,
                v_amount, 1, v_amount, v_campaign);
    END IF;

    v_doc := public.order_json(v_row);
    INSERT INTO public.outbox (tenant_id, order_id, event, payload)
    VALUES (v_tenant, p_id, 'order.created', v_doc);
    -- The actor is the visitor (the edge sets app.actor to `visitor:<id>`).
    PERFORM public.audit_record('order.create', 'order', p_id::text, NULL, v_doc);
    RETURN jsonb_build_object('outcome', 'created', 'order', v_doc);
END
$$;

REVOKE ALL ON FUNCTION public.checkout(uuid, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.checkout(uuid, text, text, text, jsonb) TO edgefront_app;

-- Moves an order along pending → confirmed → shipped → delivered; pending and confirmed
-- orders may be cancelled, which gives their tracked inventory back (once: a cancelled order
-- moves no further). p_version is the If-Match version (NULL: none). Outcomes:
--   {"outcome":"updated","order":{…}}
--   {"outcome":"not_found"}
--   {"outcome":"precondition_failed","version":n}
--   {"outcome":"invalid_transition","from":"shipped","allowed":["delivered"]}
-- "updated" writes one outbox row: 'order.cancelled' or 'order.status_changed', with payload
-- {"order":{…},"from","to"}.
CREATE OR REPLACE FUNCTION public.order_transition(p_id uuid, p_version integer, p_status text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_cur     public.orders;
    v_row     public.orders;
    v_allowed text[];
    v_doc     jsonb;
BEGIN
    SELECT * INTO v_cur FROM public.orders WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    IF p_version IS NOT NULL AND v_cur.version <> p_version THEN
        RETURN jsonb_build_object('outcome', 'precondition_failed', 'version', v_cur.version);
    END IF;
    v_allowed := CASE v_cur.status
        WHEN 'pending' THEN ARRAY['confirmed', 'cancelled']
        WHEN 'confirmed' THEN ARRAY['shipped', 'cancelled']
        WHEN 'shipped' THEN ARRAY['delivered']
        ELSE ARRAY[]::text[] END;
    IF NOT coalesce(p_status = ANY (v_allowed), false) THEN
        RETURN jsonb_build_object('outcome', 'invalid_transition', 'from', v_cur.status,
                                  'allowed', to_jsonb(v_allowed));
    END IF;

    IF p_status = 'cancelled' THEN
        PERFORM 1 FROM public.catalog_items
        WHERE id IN (SELECT item_id FROM public.order_items WHERE order_id = p_id AND item_id IS NOT NULL)
        ORDER BY id FOR UPDATE;
        UPDATE public.catalog_items c SET
            inventory  = c.inventory + r.quantity,
            version    = c.version + 1,
            updated_at = clock_timestamp()
        FROM (SELECT item_id, sum(quantity)::integer AS quantity FROM public.order_items
              WHERE order_id = p_id AND item_id IS NOT NULL
              GROUP BY item_id) r
        WHERE c.id = r.item_id AND c.inventory IS NOT NULL;
    END IF;

    UPDATE public.orders SET status = p_status, version = version + 1, updated_at = clock_timestamp()
    WHERE id = p_id
    RETURNING * INTO v_row;
    v_doc := public.order_json(v_row);
    PERFORM public.audit_record('order.status_change', 'order', p_id::text,
                                jsonb_build_object('status', v_cur.status, 'version', v_cur.version),
                                jsonb_build_object('status', v_row.status, 'version', v_row.version));
    INSERT INTO public.outbox (tenant_id, order_id, event, payload)
    VALUES (v_row.tenant_id, p_id,
            CASE WHEN p_status = 'cancelled' THEN 'order.cancelled' ELSE 'order.status_changed' END,
            jsonb_build_object('order', v_doc, 'from', v_cur.status, 'to', p_status));
    RETURN jsonb_build_object('outcome', 'updated', 'order', v_doc);
END
$$;

REVOKE ALL ON FUNCTION public.order_transition(uuid, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.order_transition(uuid, integer, text) TO edgefront_app;

-- Orders and donations created in [p_from, p_to). Orders (kind 'order') by status and by UTC
-- day (days with orders only, oldest first): count includes cancelled orders, revenue (Σ total)
-- does not. Donations apart, not cancelled. Sums are over totals of any currency.
CREATE OR REPLACE FUNCTION public.orders_summary(p_from timestamptz, p_to timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH o AS (
        SELECT kind, status, total, created_at FROM public.orders
        WHERE created_at >= p_from AND created_at < p_to
    )
    SELECT jsonb_build_object(
        'from', public.iso_utc(p_from), 'to', public.iso_utc(p_to),
        'orders', jsonb_build_object(
            'by_status', (
                SELECT jsonb_object_agg(s.status, jsonb_build_object('count', s.n, 'revenue', s.revenue))
                FROM (SELECT st.status, count(o.status) AS n,
                             round(coalesce(sum(o.total) FILTER (WHERE o.status <> 'cancelled'), 0), 3)::text AS revenue
                      FROM unnest(ARRAY['pending', 'confirmed', 'shipped', 'delivered', 'cancelled']) AS st (status)
                      LEFT JOIN o ON o.kind = 'order' AND o.status = st.status
                      GROUP BY st.status) s),
            'by_day', (
                SELECT coalesce(jsonb_agg(jsonb_build_object('day', d.day, 'count', d.n, 'revenue', d.revenue)
                                          ORDER BY d.day), '[]'::jsonb)
                FROM (SELECT to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS n,
                             round(coalesce(sum(o.total) FILTER (WHERE o.status <> 'cancelled'), 0), 3)::text AS revenue
                      FROM o WHERE o.kind = 'order'
                      GROUP BY 1) d)),
        'donations', (
            SELECT jsonb_build_object('count', count(*), 'amount', round(coalesce(sum(o.total), 0), 3)::text)
            FROM o WHERE o.kind = 'donation' AND o.status <> 'cancelled'))
$$;

REVOKE ALL ON FUNCTION public.orders_summary(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.orders_summary(timestamptz, timestamptz) TO edgefront_app;

-- Visits created in [p_from, p_to) by (utm_source, utm_campaign), with the orders that name
-- those visits (kind 'order', not cancelled, whenever placed) and their revenue (Σ total).
CREATE OR REPLACE FUNCTION public.visits_attribution(p_from timestamptz, p_to timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH v AS (
        SELECT tenant_id, id, utm_source, utm_campaign FROM public.visits
        WHERE created_at >= p_from AND created_at < p_to
    ), per_visit AS (
        SELECT o.visit_id, count(*) AS n, sum(o.total) AS revenue
        FROM public.orders o JOIN v ON v.tenant_id = o.tenant_id AND v.id = o.visit_id
        WHERE o.kind = 'order' AND o.status <> 'cancelled'
        GROUP BY o.visit_id
    ), g AS (
        SELECT v.utm_source, v.utm_campaign, count(*) AS visits,
               coalesce(sum(p.n), 0)::bigint AS orders, coalesce(sum(p.revenue), 0) AS revenue
        FROM v LEFT JOIN per_visit p ON p.visit_id = v.id
        GROUP BY v.utm_source, v.utm_campaign
    )
    SELECT jsonb_build_object(
        'from', public.iso_utc(p_from), 'to', public.iso_utc(p_to),
        'rows', coalesce((
            SELECT jsonb_agg(jsonb_build_object('utm_source', g.utm_source, 'utm_campaign', g.utm_campaign,
                                                'visits', g.visits, 'orders', g.orders,
                                                'revenue', round(g.revenue, 3)::text)
                             ORDER BY g.visits DESC, g.utm_source, g.utm_campaign)
            FROM g), '[]'::jsonb))
$$;

REVOKE ALL ON FUNCTION public.visits_attribution(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.visits_attribution(timestamptz, timestamptz) TO edgefront_app;
