-- Remove the accepted domains $2 from organization $1.
DELETE FROM accepted_domains
WHERE organization_id = $1
    AND domain = ANY($2::text[])
