-- Store a new token of organization $1 by its hash $2, with description $3 and expiry $4.
INSERT INTO api_tokens (
    organization_id,
    token_hash,
    description,
    expires_at
)
VALUES ($1, $2, $3, $4)
