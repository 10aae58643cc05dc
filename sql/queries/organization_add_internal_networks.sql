-- Declare the internal networks $2 for organization $1; return those it had not declared yet.
INSERT INTO internal_networks (organization_id, network)
SELECT
    $1,
    network
FROM unnest($2::cidr[]) AS network
ON CONFLICT DO NOTHING
RETURNING network
