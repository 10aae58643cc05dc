-- The tokens of organization $1, oldest first, without their hashes.
SELECT
    id,
    role,
    description,
    created_at,
    expires_at,
    revoked_at,
    last_used_at
FROM api_tokens
WHERE organization_id = $1
ORDER BY id
