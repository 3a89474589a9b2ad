-- 0005_catalog_images: catalog items may reference only the tenant's `ready` image files.
-- Checked by a trigger, so every writer (catalog_create, catalog_update, or anything later)
-- is held to it; the edge maps the error to 422 `image_not_ready`. Images deleted later simply
-- disappear from the storefront (public.ready_images filters them).

CREATE OR REPLACE FUNCTION public.catalog_items_check_images() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_missing uuid;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.image_file_ids IS NOT DISTINCT FROM OLD.image_file_ids THEN
        RETURN NEW;
    END IF;
    SELECT ids.id INTO v_missing
    FROM unnest(NEW.image_file_ids) AS ids (id)
    WHERE NOT EXISTS (
        SELECT 1 FROM public.files f
        WHERE f.tenant_id = NEW.tenant_id AND f.id = ids.id
          AND f.status = 'ready' AND f.content_type LIKE 'image/%')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'image_not_ready'
            USING ERRCODE = 'P0001', DETAIL = v_missing::text,
                  HINT = 'catalog images must be ready image files of the same tenant';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS catalog_items_check_images ON public.catalog_items;
CREATE TRIGGER catalog_items_check_images
    BEFORE INSERT OR UPDATE OF image_file_ids ON public.catalog_items
    FOR EACH ROW EXECUTE FUNCTION public.catalog_items_check_images();
