-- Hold the connectors $2 of organization $1 that still exist (FOR KEY SHARE, in id order) until
-- this transaction ends, so none is deleted before the facts naming it commit; return their ids.
SELECT id
FROM connectors
WHERE organization_id = $1
    AND id = ANY($2::bigint[])
ORDER BY id
FOR KEY SHARE
