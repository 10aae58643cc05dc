-- Create the organization named $1; return its id, or nothing when it already exists.
INSERT INTO organizations (name)
VALUES ($1)
ON CONFLICT ((lower(name))) DO NOTHING
RETURNING id
