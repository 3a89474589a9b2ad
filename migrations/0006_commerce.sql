-- 0006_commerce: storefront visits (attribution), orders and donations, per-tenant order
-- numbers and the transactional outbox. Follows 0001's row-level-security convention. The
-- functions that write them (visit_record, checkout, order_transition) and the reports are in
-- migrations/functions/40_commerce.sql.
--
-- Money is numeric(12,3), as catalog_items.price. Orders are never deleted by the app: a
-- cancellation is a status.

-- Orders a tenant may create per calendar month (UTC); NULL means unlimited.
-- tenants.settings.limits.max_orders_per_month overrides it per tenant.
ALTER TABLE public.tier_limits ADD COLUMN IF NOT EXISTS max_orders_per_month integer
    CONSTRAINT tier_limits_orders_nonneg CHECK (max_orders_per_month >= 0);
UPDATE public.tier_limits SET max_orders_per_month = CASE tier
    WHEN 'basic' THEN 1000 WHEN 'premium' THEN 50000 ELSE NULL END;

-- NULL inventory: not tracked (unlimited); checkout never takes it and cancel never gives it
-- back. The default (0) and the CHECK (>= 0, which NULL passes) stay.
ALTER TABLE public.catalog_items ALTER COLUMN inventory DROP NOT NULL;

CREATE TABLE IF NOT EXISTS public.visits (
    tenant_id    uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    visitor_id   text NOT NULL CONSTRAINT visits_visitor_len CHECK (char_length(visitor_id) BETWEEN 1 AND 200),
    path         text NOT NULL CONSTRAINT visits_path_len CHECK (char_length(path) BETWEEN 1 AND 2048),
    referrer     text CONSTRAINT visits_referrer_len CHECK (char_length(referrer) <= 2048),
    utm_source   text CONSTRAINT visits_utm_source_len CHECK (char_length(utm_source) <= 200),
    utm_medium   text CONSTRAINT visits_utm_medium_len CHECK (char_length(utm_medium) <= 200),
    utm_campaign text CONSTRAINT visits_utm_campaign_len CHECK (char_length(utm_campaign) <= 200),
    utm_term     text CONSTRAINT visits_utm_term_len CHECK (char_length(utm_term) <= 200),
    utm_content  text CONSTRAINT visits_utm_content_len CHECK (char_length(utm_content) <= 200),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id)
);
-- The per-visitor rate limit (visits of one visitor in the last hour).
CREATE INDEX IF NOT EXISTS visits_visitor_idx ON public.visits (tenant_id, visitor_id, created_at);
-- Attribution reports over a time range.
CREATE INDEX IF NOT EXISTS visits_created_idx ON public.visits (tenant_id, created_at);

CREATE TABLE IF NOT EXISTS public.orders (
    tenant_id        uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    -- Per tenant, from order_counters (the first is 1001).
    number           integer NOT NULL,
    kind             text NOT NULL CONSTRAINT orders_kind_valid CHECK (kind IN ('order', 'donation')),
    status           text NOT NULL DEFAULT 'pending'
                     CONSTRAINT orders_status_valid CHECK (status IN ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled')),
    customer_email   text NOT NULL CONSTRAINT orders_customer_email_len CHECK (char_length(customer_email) BETWEEN 1 AND 320),
    customer_name    text NOT NULL CONSTRAINT orders_customer_name_len CHECK (char_length(customer_name) <= 500),
    shipping_address jsonb CONSTRAINT orders_shipping_address_object CHECK (jsonb_typeof(shipping_address) = 'object'),
    currency         text NOT NULL CONSTRAINT orders_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal         numeric(12, 3) NOT NULL CONSTRAINT orders_subtotal_nonneg CHECK (subtotal >= 0),
    total            numeric(12, 3) NOT NULL CONSTRAINT orders_total_nonneg CHECK (total >= 0),
    visit_id         uuid,
    visitor_id       text,
    -- The checkout's Idempotency-Key and a hash of its body: a retry with both equal gets the
    -- order back instead of a second one.
    idempotency_key  text NOT NULL CONSTRAINT orders_idempotency_key_len CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     text NOT NULL,
    version          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT orders_number_unique UNIQUE (tenant_id, number),
    CONSTRAINT orders_idempotency_key_unique UNIQUE (tenant_id, idempotency_key),
    CONSTRAINT orders_visit_fk FOREIGN KEY (tenant_id, visit_id) REFERENCES public.visits (tenant_id, id)
);
-- The admin list (keyset pagination, newest first), by status, by customer; the month's count
-- for the tier limit uses the first.
CREATE INDEX IF NOT EXISTS orders_created_idx ON public.orders (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_status_created_idx
    ON public.orders (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_customer_email_idx ON public.orders (tenant_id, customer_email);
-- Attribution (orders of a visit) and the visits foreign key.
CREATE INDEX IF NOT EXISTS orders_visit_idx ON public.orders (tenant_id, visit_id) WHERE visit_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS public.order_items (
    tenant_id  uuid NOT NULL,
    order_id   uuid NOT NULL,
    line       integer NOT NULL CONSTRAINT order_items_line_pos CHECK (line >= 1),
    kind       text NOT NULL CONSTRAINT order_items_kind_valid CHECK (kind IN ('item', 'donation')),
    item_id    uuid,
    sku        text,
    name       text NOT NULL,
    unit_price numeric(12, 3) NOT NULL CONSTRAINT order_items_unit_price_nonneg CHECK (unit_price >= 0),
    quantity   integer NOT NULL CONSTRAINT order_items_quantity_pos CHECK (quantity > 0),
    line_total numeric(12, 3) NOT NULL CONSTRAINT order_items_line_total_nonneg CHECK (line_total >= 0),
    campaign   text,
    PRIMARY KEY (tenant_id, order_id, line),
    FOREIGN KEY (tenant_id, order_id) REFERENCES public.orders (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT order_items_item_has_id CHECK (kind <> 'item' OR item_id IS NOT NULL)
);

-- The last order number given per tenant. Checkout bumps it with one
-- INSERT … ON CONFLICT DO UPDATE … RETURNING: the row lock serialises a tenant's checkouts
-- there, so no number is given twice.
CREATE TABLE IF NOT EXISTS public.order_counters (
    tenant_id   uuid PRIMARY KEY REFERENCES public.tenants (id) ON DELETE CASCADE,
    last_number integer NOT NULL
);

-- Events for other systems, written in the transaction that causes them (one row per event);
-- a relay delivers the rows whose delivered_at is NULL and sets it.
CREATE TABLE IF NOT EXISTS public.outbox (
    tenant_id    uuid NOT NULL,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    order_id     uuid NOT NULL,
    event        text NOT NULL
                 CONSTRAINT outbox_event_valid CHECK (event IN ('order.created', 'order.status_changed', 'order.cancelled')),
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, order_id) REFERENCES public.orders (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS outbox_undelivered_idx ON public.outbox (delivered_at) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_order_idx ON public.outbox (tenant_id, order_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['visits', 'orders', 'order_items', 'order_counters', 'outbox'] LOOP
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON public.%I', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON public.%I
            USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

-- No DELETE anywhere. Of an order only the status moves (with its version and updated_at);
-- lines never change; an outbox row is only marked delivered.
GRANT SELECT, INSERT ON public.visits, public.order_items TO edgefront_app;
GRANT SELECT, INSERT ON public.orders TO edgefront_app;
GRANT UPDATE (status, version, updated_at) ON public.orders TO edgefront_app;
GRANT SELECT, INSERT, UPDATE ON public.order_counters TO edgefront_app;
GRANT SELECT, INSERT ON public.outbox TO edgefront_app;
GRANT UPDATE (delivered_at) ON public.outbox TO edgefront_app;
