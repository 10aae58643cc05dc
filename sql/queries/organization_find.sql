-- The id of the organization named $1.
SELECT id
FROM organizations
WHERE name = $1
