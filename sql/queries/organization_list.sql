-- The id and name of every organization, in order (the tables' owner sees them all).
SELECT
    id,
    name
FROM organizations
ORDER BY
    id
