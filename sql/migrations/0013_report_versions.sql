-- Report versions: a counter per organization and source of report data that moves in the same
-- transaction as that data, so a cached answer keyed by the version is never served stale.
-- Triggers keep them, whatever statement changes the data (ingest, reclassify, a removed
-- connector, a mutation, org apply, retention).
--
-- Each source has its own row, so the row lock a change takes follows the locks that change
-- already holds: rollups change under the rollup advisory lock, connectors and domains under the
-- organization's lock, TLS reports on their own. One row for all would let an ingest (rollup
-- lock, then version) and a connector removal (version, then rollup lock) wait for each other.

CREATE TABLE report_versions (
    organization_id bigint NOT NULL,
    source text NOT NULL CHECK (source IN ('rollups', 'organization', 'tls_reports')),
    version bigint NOT NULL,
    PRIMARY KEY (organization_id, source)
);

ALTER TABLE report_versions ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON report_versions
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());
GRANT SELECT, INSERT, UPDATE ON report_versions TO mailflow_app;

-- Count one change of source TG_ARGV[0] for each organization among the statement's rows.
CREATE FUNCTION bump_report_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_versions (organization_id, source, version)
    SELECT DISTINCT changed.organization_id, TG_ARGV[0], 1
    FROM changed_rows AS changed
    ORDER BY changed.organization_id
    ON CONFLICT (organization_id, source) DO UPDATE SET
        version = report_versions.version + 1;
    RETURN NULL;
END
$$;

-- A trigger with a transition table serves one event, hence three per table.
DO $$
DECLARE
    watched record;
    event text;
BEGIN
    FOR watched IN
        SELECT *
        FROM (VALUES
            ('daily_rollups', 'rollups'),
            ('connectors', 'organization'),
            ('accepted_domains', 'organization'),
            ('internal_networks', 'organization'),
            ('tls_reports', 'tls_reports'),
            ('tls_report_policies', 'tls_reports'),
            ('tls_report_failures', 'tls_reports')
        ) AS tables (table_name, source)
    LOOP
        FOREACH event IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
            EXECUTE format(
                'CREATE TRIGGER %I AFTER %s ON %I REFERENCING %s TABLE AS changed_rows '
                'FOR EACH STATEMENT EXECUTE FUNCTION bump_report_versions(%L)',
                'report_version_on_' || lower(event), event, watched.table_name,
                CASE event WHEN 'DELETE' THEN 'OLD' ELSE 'NEW' END, watched.source
            );
        END LOOP;
    END LOOP;
END
$$;
