-- Add the accepted domains $2 to organization $1; return those it did not have yet.
INSERT INTO accepted_domains (organization_id, domain)
SELECT
    $1,
    domain
FROM unnest($2::text[]) AS domain
ON CONFLICT DO NOTHING
RETURNING domain
