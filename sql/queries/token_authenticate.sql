-- The organization and role of the valid token with hash $2 under organization $1; notes its
-- use, at most once a minute so that busy tokens do not turn every request into a write.
WITH valid_token AS (
    SELECT
        organization_id,
        id,
        role,
        last_used_at
    FROM api_tokens
    WHERE organization_id = $1
        AND token_hash = $2
        AND revoked_at IS NULL
        AND (expires_at IS NULL OR expires_at > now())
),
noted_use AS (
    UPDATE api_tokens
    SET last_used_at = now()
    FROM valid_token
    WHERE api_tokens.organization_id = valid_token.organization_id
        AND api_tokens.id = valid_token.id
        AND (
            api_tokens.last_used_at IS NULL
            OR api_tokens.last_used_at < now() - interval '1 minute'
        )
    RETURNING api_tokens.id
)
SELECT
    organization_id,
    role
FROM valid_token
