-- The organization and role of the valid token with hash $2 under organization $1, through
-- the function that may read tokens before the transaction names an organization; it notes
-- the token's use, at most once a minute.
SELECT
    organization_id,
    role
FROM authenticate_token($1, $2)
