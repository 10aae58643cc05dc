-- Live updates: every statement that changes daily rollups sends, on the channel
-- mailflow_rollups, one notification per organization it touched:
--   {"organization_id": 7, "days": ["2026-12-01", ...]}
-- with "days" null when there are more than fit in a notification (over 366). PostgreSQL
-- delivers notifications when the transaction commits, and drops them when it rolls back, so
-- a listener hears only of rollups that are committed; identical ones in one transaction are
-- delivered once.
--
-- A trigger with transition tables serves one event, hence one trigger per event.

CREATE FUNCTION notify_rollup_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'mailflow_rollups',
        json_build_object(
            'organization_id', changed.organization_id,
            'days', CASE WHEN changed.day_count <= 366 THEN changed.days END
        )::text
    )
    FROM (
        SELECT
            changed_rows.organization_id,
            count(DISTINCT changed_rows.day) AS day_count,
            array_agg(DISTINCT changed_rows.day ORDER BY changed_rows.day) AS days
        FROM changed_rows
        GROUP BY changed_rows.organization_id
    ) AS changed;
    RETURN NULL;
END;
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION notify_rollup_changes() SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;

CREATE TRIGGER daily_rollups_notify_inserted
    AFTER INSERT ON daily_rollups
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_rollup_changes();

CREATE TRIGGER daily_rollups_notify_updated
    AFTER UPDATE ON daily_rollups
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_rollup_changes();

CREATE TRIGGER daily_rollups_notify_deleted
    AFTER DELETE ON daily_rollups
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_rollup_changes();
