-- Retention: whole message_facts partitions are dropped once every fact they may hold is older
-- than the fact retention, by the role that owns them (mailflow partitions maintain). The
-- service role may not call this: only the operator's scheduled command removes facts.
CREATE FUNCTION drop_message_fact_partition(month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := format('message_facts_%s',
                                  to_char(date_trunc('month', month), 'YYYYMM'));
BEGIN
    IF to_regclass(partition_name) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', partition_name);
    RETURN true;
END;
$$;

REVOKE EXECUTE ON FUNCTION drop_message_fact_partition(date) FROM PUBLIC;

-- Daily organization rollups: the daily rollups summed over connectors, per organization, day,
-- direction and TLS version. Reports over all of an organization's mail (mailFlow without a
-- connector, tlsBreakdown) read them: one row per day, direction and TLS version, however many
-- connectors. Triggers on daily_rollups keep them equal to its sums in the same statement, so
-- every writer of daily rollups keeps them right without knowing of them.
CREATE TABLE daily_organization_rollups (
    organization_id bigint NOT NULL,
    day date NOT NULL,
    direction text NOT NULL CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    tls_version text NOT NULL
        CHECK (tls_version IN ('NONE', 'TLS1_0', 'TLS1_1', 'TLS1_2', 'TLS1_3', 'UNKNOWN')),
    messages bigint NOT NULL,
    recipients bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (organization_id, day, direction, tls_version)
);

-- Add what a statement changed in daily_rollups (its new rows less its old rows) to the
-- organization rollups of the same keys, then remove those left counting nothing.
CREATE FUNCTION add_to_daily_organization_rollups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO daily_organization_rollups AS totals (
            organization_id,
            day,
            direction,
            tls_version,
            messages,
            recipients,
            bytes
        )
        SELECT
            organization_id,
            day,
            direction,
            tls_version,
            sum(messages),
            sum(recipients),
            sum(bytes)
        FROM new_rollups
        GROUP BY
            organization_id,
            day,
            direction,
            tls_version
        ORDER BY
            organization_id,
            day,
            direction,
            tls_version
        ON CONFLICT (organization_id, day, direction, tls_version) DO UPDATE SET
            messages = totals.messages + EXCLUDED.messages,
            recipients = totals.recipients + EXCLUDED.recipients,
            bytes = totals.bytes + EXCLUDED.bytes;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        WITH removed AS (
            SELECT
                organization_id,
                day,
                direction,
                tls_version,
                sum(messages) AS messages,
                sum(recipients) AS recipients,
                sum(bytes) AS bytes
            FROM old_rollups
            GROUP BY
                organization_id,
                day,
                direction,
                tls_version
        )
        UPDATE daily_organization_rollups AS totals SET
            messages = totals.messages - removed.messages,
            recipients = totals.recipients - removed.recipients,
            bytes = totals.bytes - removed.bytes
        FROM removed
        WHERE totals.organization_id = removed.organization_id
            AND totals.day = removed.day
            AND totals.direction = removed.direction
            AND totals.tls_version = removed.tls_version;

        DELETE FROM daily_organization_rollups AS totals
        USING old_rollups AS removed
        WHERE totals.organization_id = removed.organization_id
            AND totals.day = removed.day
            AND totals.direction = removed.direction
            AND totals.tls_version = removed.tls_version
            AND totals.messages = 0;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER daily_rollups_inserted
    AFTER INSERT ON daily_rollups
    REFERENCING NEW TABLE AS new_rollups
    FOR EACH STATEMENT EXECUTE FUNCTION add_to_daily_organization_rollups();
CREATE TRIGGER daily_rollups_updated
    AFTER UPDATE ON daily_rollups
    REFERENCING OLD TABLE AS old_rollups NEW TABLE AS new_rollups
    FOR EACH STATEMENT EXECUTE FUNCTION add_to_daily_organization_rollups();
CREATE TRIGGER daily_rollups_deleted
    AFTER DELETE ON daily_rollups
    REFERENCING OLD TABLE AS old_rollups
    FOR EACH STATEMENT EXECUTE FUNCTION add_to_daily_organization_rollups();

-- The sums of the rollups stored so far, every organization's (row security is lifted from
-- daily_rollups for this transaction alone, which holds it locked).
ALTER TABLE daily_rollups NO FORCE ROW LEVEL SECURITY;
INSERT INTO daily_organization_rollups (
    organization_id,
    day,
    direction,
    tls_version,
    messages,
    recipients,
    bytes
)
SELECT
    organization_id,
    day,
    direction,
    tls_version,
    sum(messages),
    sum(recipients),
    sum(bytes)
FROM daily_rollups
GROUP BY
    organization_id,
    day,
    direction,
    tls_version;
ALTER TABLE daily_rollups FORCE ROW LEVEL SECURITY;

ALTER TABLE daily_organization_rollups ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON daily_organization_rollups
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON daily_organization_rollups TO mailflow_app;
