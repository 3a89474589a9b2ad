-- 0002_catalog: tier limits, catalog items and idempotency keys. The functions that write
-- items atomically, and the catalog_items triggers, are in migrations/functions/10_catalog.sql.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- What each tier may do. NULL means unlimited. Later features add columns here.
CREATE TABLE IF NOT EXISTS public.tier_limits (
    tier              text PRIMARY KEY
                      CONSTRAINT tier_limits_tier_valid CHECK (tier IN ('basic', 'premium', 'enterprise')),
    max_catalog_items integer CONSTRAINT tier_limits_items_nonneg CHECK (max_catalog_items >= 0)
);

INSERT INTO public.tier_limits (tier, max_catalog_items) VALUES
    ('basic', 100), ('premium', 1000), ('enterprise', NULL)
ON CONFLICT (tier) DO NOTHING;

GRANT SELECT ON public.tier_limits TO edgefront_app;

CREATE TABLE IF NOT EXISTS public.catalog_items (
    tenant_id      uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    sku            text NOT NULL
                   CONSTRAINT catalog_items_sku_format CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name           text NOT NULL
                   CONSTRAINT catalog_items_name_len CHECK (char_length(btrim(name)) BETWEEN 1 AND 200),
    description    text NOT NULL DEFAULT ''
                   CONSTRAINT catalog_items_description_len CHECK (char_length(description) <= 5000),
    price          numeric(12, 3) NOT NULL CONSTRAINT catalog_items_price_nonneg CHECK (price >= 0),
    currency       text NOT NULL CONSTRAINT catalog_items_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    category       text CONSTRAINT catalog_items_category_len CHECK (char_length(category) BETWEEN 1 AND 100),
    inventory      integer NOT NULL DEFAULT 0 CONSTRAINT catalog_items_inventory_nonneg CHECK (inventory >= 0),
    status         text NOT NULL DEFAULT 'draft'
                   CONSTRAINT catalog_items_status_valid CHECK (status IN ('draft', 'active', 'archived')),
    image_file_ids uuid[] NOT NULL DEFAULT '{}'
                   CONSTRAINT catalog_items_images_max CHECK (cardinality(image_file_ids) <= 10),
    version        integer NOT NULL DEFAULT 1,
    -- clock_timestamp, not now(): items created in one transaction still get distinct times.
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- What `q` searches: trigram similarity over this text (substring and typo tolerant).
    search_text    text GENERATED ALWAYS AS (
                       lower(name || ' ' || sku || ' ' || coalesce(category, '') || ' ' || description)
                   ) STORED,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT catalog_items_sku_unique UNIQUE (tenant_id, sku)
);

-- Listing orders (keyset pagination: the sort key plus id as tie-break).
CREATE INDEX IF NOT EXISTS catalog_items_created_idx
    ON public.catalog_items (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS catalog_items_name_idx
    ON public.catalog_items (tenant_id, name, id);
CREATE INDEX IF NOT EXISTS catalog_items_price_idx
    ON public.catalog_items (tenant_id, price, id);
-- The storefront lists only active items.
CREATE INDEX IF NOT EXISTS catalog_items_active_created_idx
    ON public.catalog_items (tenant_id, created_at DESC, id DESC) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS catalog_items_category_idx
    ON public.catalog_items (tenant_id, category, created_at DESC, id DESC);
-- `q`: LIKE '%word%' per word, served by a trigram GIN index (with the tenant, via btree_gin)
-- through catalog_search_ids() (functions/10_catalog.sql).
CREATE INDEX IF NOT EXISTS catalog_items_search_trgm_idx
    ON public.catalog_items USING gin (tenant_id, search_text gin_trgm_ops);

ALTER TABLE public.catalog_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.catalog_items FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.catalog_items;
CREATE POLICY tenant_isolation ON public.catalog_items
    USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON public.catalog_items TO edgefront_app;

-- Idempotency keys: a replayed create returns the stored response; the same key with another
-- body is a conflict. Scoped by tenant and operation; kept for 24 hours.
CREATE TABLE IF NOT EXISTS public.idempotency_keys (
    tenant_id    uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    scope        text NOT NULL,
    key          text NOT NULL CONSTRAINT idempotency_keys_key_len CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash text NOT NULL,
    status       integer NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, scope, key)
);

ALTER TABLE public.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.idempotency_keys FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.idempotency_keys;
CREATE POLICY tenant_isolation ON public.idempotency_keys
    USING      (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);

GRANT SELECT, INSERT, DELETE ON public.idempotency_keys TO edgefront_app;
