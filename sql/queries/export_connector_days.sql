-- Mail of organization $1 per UTC day, direction and connector from $2 to $3, with its messages
-- per TLS version, kept by direction $4, connector $5 or no connector ($6); no connector last.
SELECT
    rollups.day,
    rollups.direction,
    connectors.name AS connector_name,
    connectors.kind AS connector_kind,
    connectors.require_tls,
    (sum(rollups.messages) FILTER (WHERE rollups.tls_version = 'NONE'))::bigint AS no_tls,
    (sum(rollups.messages) FILTER (WHERE rollups.tls_version = 'TLS1_0'))::bigint AS tls1_0,
    (sum(rollups.messages) FILTER (WHERE rollups.tls_version = 'TLS1_1'))::bigint AS tls1_1,
    (sum(rollups.messages) FILTER (WHERE rollups.tls_version = 'TLS1_2'))::bigint AS tls1_2,
    (sum(rollups.messages) FILTER (WHERE rollups.tls_version = 'TLS1_3'))::bigint AS tls1_3,
    (sum(rollups.messages) FILTER (WHERE rollups.tls_version = 'UNKNOWN'))::bigint AS unknown,
    sum(rollups.messages)::bigint AS messages
FROM daily_rollups AS rollups
LEFT JOIN connectors
    ON connectors.organization_id = rollups.organization_id
    AND connectors.id = rollups.connector_id
WHERE rollups.organization_id = $1
    AND rollups.day BETWEEN $2::date AND $3::date
    AND ($4::text IS NULL OR rollups.direction = $4::text)
    AND ($5::bigint IS NULL OR rollups.connector_id = $5::bigint)
    AND (NOT $6::boolean OR rollups.connector_id IS NULL)
GROUP BY
    rollups.day,
    rollups.direction,
    rollups.connector_id,
    connectors.name,
    connectors.kind,
    connectors.require_tls
HAVING sum(rollups.messages) > 0
ORDER BY
    rollups.day,
    rollups.direction,
    connectors.name NULLS LAST
