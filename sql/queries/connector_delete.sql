-- Delete the connectors $2 of organization $1.
DELETE FROM connectors
WHERE organization_id = $1
    AND id = ANY($2::bigint[])
