-- Store a new token of organization $1 by its hash $2, with description $3, expiry $4, role $5.
INSERT INTO api_tokens (
    organization_id,
    token_hash,
    description,
    expires_at,
    role
)
VALUES ($1, $2, $3, $4, $5)
