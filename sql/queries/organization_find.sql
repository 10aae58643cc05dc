-- The id of the organization named $1, whatever the case of its letters.
SELECT id
FROM organizations
WHERE lower(name) = lower($1)
