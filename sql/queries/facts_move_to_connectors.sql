-- Give the facts ($2 source keys, $3 times, all between $6 and $7) of organization $1 the
-- connectors $5 where they still have the connectors $4; count the moved facts by rollup key,
-- from connector and to connector.
WITH moves AS (
    SELECT
        source_key,
        occurred_at,
        from_connector_id,
        to_connector_id
    FROM unnest($2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[])
        AS moves (source_key, occurred_at, from_connector_id, to_connector_id)
),
moved_facts AS (
    UPDATE message_facts AS facts
    SET connector_id = moves.to_connector_id
    FROM moves
    WHERE facts.organization_id = $1
        AND facts.occurred_at >= $6
        AND facts.occurred_at <= $7
        AND facts.source_key = moves.source_key
        AND facts.occurred_at = moves.occurred_at
        AND facts.connector_id IS NOT DISTINCT FROM moves.from_connector_id
    RETURNING
        facts.occurred_at,
        facts.direction,
        facts.tls_version,
        facts.recipients,
        facts.size_bytes,
        moves.from_connector_id,
        moves.to_connector_id
)
SELECT
    (occurred_at AT TIME ZONE 'UTC')::date AS day,
    direction,
    tls_version,
    from_connector_id,
    to_connector_id,
    count(*) AS messages,
    sum(recipients)::bigint AS recipients,
    sum(size_bytes)::bigint AS bytes
FROM moved_facts
GROUP BY
    day,
    direction,
    tls_version,
    from_connector_id,
    to_connector_id
