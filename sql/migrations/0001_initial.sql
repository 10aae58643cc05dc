-- The first schema: organizations and their routes, message facts, daily rollups, API tokens.
-- Every table owned by an organization leads its keys with organization_id, the
-- distribution column when the database is scaled out with Citus.

CREATE TABLE organizations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accepted_domains (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    domain text NOT NULL CHECK (domain = lower(domain)),
    PRIMARY KEY (organization_id, domain)
);

CREATE TABLE internal_networks (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    network cidr NOT NULL,
    PRIMARY KEY (organization_id, network)
);

CREATE TABLE connectors (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    direction text NOT NULL CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    kind text NOT NULL CHECK (kind IN ('PARTNER', 'ON_PREMISES')),
    sender_domains text[] NOT NULL DEFAULT '{}',
    recipient_domains text[] NOT NULL DEFAULT '{}',
    client_ips cidr[] NOT NULL DEFAULT '{}',
    smart_hosts text[] NOT NULL DEFAULT '{}',
    tls_cert_names text[] NOT NULL DEFAULT '{}',
    require_tls boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id),
    UNIQUE (organization_id, name)
);

CREATE TABLE message_facts (
    organization_id bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    source_key text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    connector_id bigint,
    tls_version text NOT NULL
        CHECK (tls_version IN ('NONE', 'TLS1_0', 'TLS1_1', 'TLS1_2', 'TLS1_3', 'UNKNOWN')),
    tls_cipher text,
    peer_host text,
    peer_ip inet,
    sender_domain text,
    recipient_domains text[] NOT NULL DEFAULT '{}',
    recipients integer NOT NULL CHECK (recipients >= 0),
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    status text NOT NULL CHECK (status IN ('RECEIVED', 'DELIVERED')),
    PRIMARY KEY (organization_id, source_key, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX message_facts_by_time ON message_facts (organization_id, occurred_at);

-- One partition per UTC calendar month, created before facts for that month are loaded.
CREATE FUNCTION ensure_message_fact_partition(month date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', month)::date;
    partition_name text := format('message_facts_%s', to_char(first_day, 'YYYYMM'));
BEGIN
    IF to_regclass(partition_name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF message_facts '
            'FOR VALUES FROM (%L) TO (%L)',
            partition_name,
            (first_day::timestamp AT TIME ZONE 'UTC'),
            ((first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC')
        );
    END IF;
END;
$$;

CREATE TABLE daily_rollups (
    organization_id bigint NOT NULL,
    day date NOT NULL,
    direction text NOT NULL CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    connector_id bigint,
    tls_version text NOT NULL
        CHECK (tls_version IN ('NONE', 'TLS1_0', 'TLS1_1', 'TLS1_2', 'TLS1_3', 'UNKNOWN')),
    messages bigint NOT NULL,
    recipients bigint NOT NULL,
    bytes bigint NOT NULL,
    CONSTRAINT daily_rollups_key
        UNIQUE NULLS NOT DISTINCT (organization_id, day, direction, connector_id, tls_version)
);

CREATE INDEX daily_rollups_by_connector ON daily_rollups (organization_id, connector_id, day);

CREATE TABLE api_tokens (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    token_hash bytea NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    PRIMARY KEY (organization_id, id),
    UNIQUE (organization_id, token_hash)
);
