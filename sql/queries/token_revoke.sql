-- Revoke token $2 of organization $1 unless it already is; return its id when revoked now.
UPDATE api_tokens
SET revoked_at = now()
WHERE organization_id = $1
    AND id = $2
    AND revoked_at IS NULL
RETURNING id
