-- The internal networks that organization $1 declared, sorted.
SELECT network
FROM internal_networks
WHERE organization_id = $1
ORDER BY network
