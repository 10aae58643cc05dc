-- Record how far organization $1 has read the followed file $2, and the parser's open state.
INSERT INTO follow_positions (
    organization_id,
    path,
    device,
    inode,
    byte_offset,
    fingerprint,
    fingerprint_bytes,
    parser_state,
    updated_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, now())
ON CONFLICT (organization_id, path) DO UPDATE
SET device = EXCLUDED.device,
    inode = EXCLUDED.inode,
    byte_offset = EXCLUDED.byte_offset,
    fingerprint = EXCLUDED.fingerprint,
    fingerprint_bytes = EXCLUDED.fingerprint_bytes,
    parser_state = EXCLUDED.parser_state,
    updated_at = EXCLUDED.updated_at
