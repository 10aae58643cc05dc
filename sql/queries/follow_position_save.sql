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
SET device = excluded.device,
    inode = excluded.inode,
    byte_offset = excluded.byte_offset,
    fingerprint = excluded.fingerprint,
    fingerprint_bytes = excluded.fingerprint_bytes,
    parser_state = excluded.parser_state,
    updated_at = excluded.updated_at
