-- Facts and rollups may name a connector that no longer exists: an `org apply` that removed it
-- while an ingest stored facts classified before the removal left them behind (the ingest now
-- holds its connectors while storing, so no new ones appear). They become "no connector", as
-- removing a connector makes its facts, and the rollups of their days are counted again.

-- Writers wait for the repair: applies (connectors), ingests (message_facts, then
-- daily_rollups), taken in the order they take them.
LOCK TABLE connectors IN SHARE MODE;
LOCK TABLE message_facts, daily_rollups IN SHARE ROW EXCLUSIVE MODE;

CREATE TEMPORARY TABLE repaired_days (
    organization_id bigint NOT NULL,
    day date NOT NULL
) ON COMMIT DROP;

WITH detached_facts AS (
    UPDATE message_facts AS facts
    SET connector_id = NULL
    WHERE facts.connector_id IS NOT NULL
        AND NOT EXISTS (
            SELECT
            FROM connectors
            WHERE connectors.organization_id = facts.organization_id
                AND connectors.id = facts.connector_id
        )
    RETURNING
        facts.organization_id,
        (facts.occurred_at AT TIME ZONE 'UTC')::date AS day
)
INSERT INTO repaired_days (organization_id, day)
SELECT organization_id, day
FROM detached_facts
UNION
SELECT rollups.organization_id, rollups.day
FROM daily_rollups AS rollups
WHERE rollups.connector_id IS NOT NULL
    AND NOT EXISTS (
        SELECT
        FROM connectors
        WHERE connectors.organization_id = rollups.organization_id
            AND connectors.id = rollups.connector_id
    );

DELETE FROM daily_rollups AS rollups
USING repaired_days
WHERE rollups.organization_id = repaired_days.organization_id
    AND rollups.day = repaired_days.day;

INSERT INTO daily_rollups (
    organization_id, day, direction, connector_id, tls_version, messages, recipients, bytes
)
SELECT
    repaired_days.organization_id,
    repaired_days.day,
    facts.direction,
    facts.connector_id,
    facts.tls_version,
    count(*),
    sum(facts.recipients),
    sum(facts.size_bytes)
FROM repaired_days
JOIN message_facts AS facts
    ON facts.organization_id = repaired_days.organization_id
    AND facts.occurred_at >= (repaired_days.day::timestamp AT TIME ZONE 'UTC')
    AND facts.occurred_at < ((repaired_days.day + 1)::timestamp AT TIME ZONE 'UTC')
GROUP BY
    repaired_days.organization_id,
    repaired_days.day,
    facts.direction,
    facts.connector_id,
    facts.tls_version;
