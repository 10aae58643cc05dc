-- Lock the connectors $2 of organization $1 for deletion or a change of name, in id order, the
-- order ingests take their KEY SHARE locks in; waits for ingests storing facts that name them.
SELECT id
FROM connectors
WHERE organization_id = $1
    AND id = ANY($2::bigint[])
ORDER BY id
FOR UPDATE
