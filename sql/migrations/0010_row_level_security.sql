-- Row-level security: a row of an organization is seen and written only by a transaction that
-- names that organization, with set_config('mailflow.organization_id', id, true). A transaction
-- that names none sees no rows and writes none. The tables are FORCEd, so their owner is held
-- to this too; only superusers and roles with BYPASSRLS pass by.
--
-- The service runs each request as mailflow_app (SET LOCAL ROLE), a role without a login
-- that owns nothing and cannot bypass row security. Tokens are checked by a function that
-- runs as the owner and sees only the organization the token names.
--
-- A later migration that must see every organization's rows turns FORCE off for its tables
-- and on again inside its own transaction, which holds them locked meanwhile.

DO $$
DECLARE
    service_role pg_catalog.pg_roles%ROWTYPE;
BEGIN
    SELECT * INTO service_role FROM pg_catalog.pg_roles WHERE rolname = 'mailflow_app';
    IF NOT FOUND THEN
        BEGIN
            CREATE ROLE mailflow_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role % may not create the role mailflow_app', current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('as a superuser, run: CREATE ROLE mailflow_app NOLOGIN; '
                                    'GRANT mailflow_app TO %I', current_user);
        END;
    ELSIF service_role.rolsuper OR service_role.rolbypassrls THEN
        RAISE EXCEPTION 'the role mailflow_app bypasses row-level security'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'ALTER ROLE mailflow_app NOSUPERUSER NOBYPASSRLS';
    END IF;

    -- The role that migrates (and runs the CLI and the server) switches to mailflow_app.
    IF NOT pg_catalog.pg_has_role(current_user, 'mailflow_app', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT mailflow_app TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role % may not grant itself the role mailflow_app', current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('as a superuser, run: GRANT mailflow_app TO %I', current_user);
        END;
    END IF;

    IF NOT has_schema_privilege('mailflow_app', current_schema(), 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO mailflow_app', current_schema());
    END IF;
END;
$$;

-- The organization the current transaction names, or NULL.
CREATE FUNCTION current_organization_id() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('mailflow.organization_id', true), '')::bigint
$$;

ALTER TABLE accepted_domains ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON accepted_domains
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE internal_networks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON internal_networks
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE connectors ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON connectors
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE message_facts ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON message_facts
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE daily_rollups ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON daily_rollups
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON api_tokens
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE tls_reports ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON tls_reports
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE tls_report_policies ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON tls_report_policies
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE tls_report_failures ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON tls_report_failures
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

ALTER TABLE follow_positions ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON follow_positions
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

-- Organizations are not forced: the owner (the CLI) finds an organization by its name before
-- any organization is named. The service role sees its own organization's row alone.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_row ON organizations
    USING (id = current_organization_id())
    WITH CHECK (id = current_organization_id());

-- No TRUNCATE, which row security does not hold back, and no token hashes: only
-- authenticate_token compares them. UPDATE (name) lets a request lock its organization's row.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    accepted_domains,
    internal_networks,
    connectors,
    message_facts,
    daily_rollups,
    tls_reports,
    tls_report_policies,
    tls_report_failures,
    follow_positions
TO mailflow_app;
GRANT SELECT (
    organization_id, id, role, description, created_at, expires_at, revoked_at, last_used_at
) ON api_tokens TO mailflow_app;
GRANT INSERT (organization_id, token_hash, description, expires_at, role),
    UPDATE (description, expires_at, revoked_at, last_used_at),
    DELETE
ON api_tokens TO mailflow_app;
GRANT SELECT, UPDATE (name) ON organizations TO mailflow_app;
-- A server whose login holds only the service role checks that the schema is current.
GRANT SELECT ON schema_migrations TO mailflow_app;

-- Partitions are read and written through message_facts, whose policy then applies; each one
-- carries the same policy too, for a statement that names it.
DO $$
DECLARE
    partition regclass;
BEGIN
    FOR partition IN
        SELECT inhrelid::regclass FROM pg_catalog.pg_inherits
        WHERE inhparent = 'message_facts'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
                       partition);
        EXECUTE format('CREATE POLICY organization_rows ON %s '
                       'USING (organization_id = current_organization_id()) '
                       'WITH CHECK (organization_id = current_organization_id())', partition);
    END LOOP;
END;
$$;

-- One partition per UTC calendar month, created as the owner for a caller that may not
-- create tables (the service role), with the policy of message_facts.
CREATE OR REPLACE FUNCTION ensure_message_fact_partition(month date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    first_day date := date_trunc('month', month)::date;
    partition_name text := format('message_facts_%s', to_char(first_day, 'YYYYMM'));
BEGIN
    IF to_regclass(partition_name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF message_facts FOR VALUES FROM (%L) TO (%L)',
            partition_name,
            (first_day::timestamp AT TIME ZONE 'UTC'),
            ((first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC')
        );
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
                       partition_name);
        EXECUTE format('CREATE POLICY organization_rows ON %I '
                       'USING (organization_id = current_organization_id()) '
                       'WITH CHECK (organization_id = current_organization_id())',
                       partition_name);
    END IF;
END;
$$;

-- The organization and role of the valid token with hash presented_hash under the
-- organization the token names; notes its use, at most once a minute. Runs as the owner, so
-- a request can be authenticated before it names an organization, and sees only the named
-- organization's tokens while it runs.
CREATE FUNCTION authenticate_token(claimed_organization_id bigint, presented_hash bytea)
RETURNS TABLE (organization_id bigint, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
#variable_conflict use_column
DECLARE
    caller_organization text := current_setting('mailflow.organization_id', true);
BEGIN
    PERFORM set_config('mailflow.organization_id', claimed_organization_id::text, true);
    RETURN QUERY
    WITH valid_token AS (
        SELECT
            tokens.organization_id,
            tokens.id,
            tokens.role
        FROM api_tokens AS tokens
        WHERE tokens.organization_id = claimed_organization_id
            AND tokens.token_hash = presented_hash
            AND tokens.revoked_at IS NULL
            AND (tokens.expires_at IS NULL OR tokens.expires_at > now())
    ),
    noted_use AS (
        UPDATE api_tokens AS tokens
        SET last_used_at = now()
        FROM valid_token
        WHERE tokens.organization_id = valid_token.organization_id
            AND tokens.id = valid_token.id
            AND (
                tokens.last_used_at IS NULL
                OR tokens.last_used_at < now() - interval '1 minute'
            )
        RETURNING tokens.id
    )
    SELECT
        valid_token.organization_id,
        valid_token.role
    FROM valid_token;
    PERFORM set_config('mailflow.organization_id', coalesce(caller_organization, ''), true);
END;
$$;

-- Functions that run as the owner take this schema and never a caller's temporary objects.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ensure_message_fact_partition(date) '
                   'SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION authenticate_token(bigint, bytea) '
                   'SET search_path = %I, pg_temp', current_schema());
END;
$$;

REVOKE EXECUTE ON FUNCTION ensure_message_fact_partition(date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION authenticate_token(bigint, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_message_fact_partition(date) TO mailflow_app;
GRANT EXECUTE ON FUNCTION authenticate_token(bigint, bytea) TO mailflow_app;
