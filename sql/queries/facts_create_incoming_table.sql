-- A transaction-scoped table that a batch of message facts is copied into, then merged from.
-- peer_ip and the arrays are text here (checked and written out before the copy, cast on the
-- merge): encoding inet values and lists for COPY costs the client more than the rest of a fact.
CREATE TEMPORARY TABLE incoming_message_facts (
    organization_id bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    source_key text NOT NULL,
    direction text NOT NULL,
    connector_id bigint,
    tls_version text NOT NULL,
    tls_cipher text,
    peer_host text,
    peer_ip text,
    sender_domain text,
    recipient_domains text NOT NULL,
    recipients integer NOT NULL,
    size_bytes bigint NOT NULL,
    status text NOT NULL,
    routes text
)
ON COMMIT DROP
