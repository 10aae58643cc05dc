-- Where `mailflow ingest postfix --follow` stopped in each followed file: the file's identity
-- (device, inode, a hash of its first bytes), the byte after the last line read, and the
-- parser's open messages at that byte. Saved in the transaction of the facts it covers.
CREATE TABLE follow_positions (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    path text NOT NULL,
    device numeric(20) NOT NULL CHECK (device >= 0),
    inode numeric(20) NOT NULL CHECK (inode >= 0),
    byte_offset bigint NOT NULL CHECK (byte_offset >= 0),
    fingerprint bytea NOT NULL,
    fingerprint_bytes integer NOT NULL CHECK (fingerprint_bytes >= 0),
    parser_state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, path)
);
