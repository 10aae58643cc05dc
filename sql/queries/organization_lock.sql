-- Hold organization $1 until this transaction ends, so two applies of its file take turns.
SELECT id
FROM organizations
WHERE id = $1
FOR UPDATE
