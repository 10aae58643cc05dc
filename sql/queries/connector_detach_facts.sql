-- Turn the facts of connectors $2 of organization $1 into "no connector"; return the UTC days
-- whose rollups must be recomputed (days of those facts, and days the rollups still name them).
WITH detached_facts AS (
    UPDATE message_facts
    SET connector_id = NULL
    WHERE organization_id = $1
        AND connector_id = ANY($2::bigint[])
    RETURNING occurred_at
),
rollup_days AS (
    SELECT day
    FROM daily_rollups
    WHERE organization_id = $1
        AND connector_id = ANY($2::bigint[])
)
SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day
FROM detached_facts
UNION
SELECT day
FROM rollup_days
ORDER BY day
