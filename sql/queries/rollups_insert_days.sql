-- Count the message facts of organization $1 on the UTC days $2 into daily rollups, day by day.
WITH touched_days AS (
    SELECT DISTINCT day
    FROM unnest($2::date[]) AS day
),
facts_of_touched_days AS (
    SELECT
        touched_days.day,
        facts.direction,
        facts.connector_id,
        facts.tls_version,
        facts.recipients,
        facts.size_bytes
    FROM touched_days
    JOIN message_facts AS facts
        ON facts.organization_id = $1
        AND facts.occurred_at >= (touched_days.day::timestamp AT TIME ZONE 'UTC')
        AND facts.occurred_at < ((touched_days.day + 1)::timestamp AT TIME ZONE 'UTC')
)
INSERT INTO daily_rollups (
    organization_id,
    day,
    direction,
    connector_id,
    tls_version,
    messages,
    recipients,
    bytes
)
SELECT
    $1,
    day,
    direction,
    connector_id,
    tls_version,
    count(*),
    sum(recipients),
    sum(size_bytes)
FROM facts_of_touched_days
GROUP BY
    day,
    direction,
    connector_id,
    tls_version
