-- The saved position of organization $1 in the followed file $2, if any.
SELECT
    device,
    inode,
    byte_offset,
    fingerprint,
    fingerprint_bytes,
    parser_state
FROM follow_positions
WHERE organization_id = $1
    AND path = $2
