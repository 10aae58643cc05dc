-- The report version of organization $1: the sum of its sources' counters, which grows with
-- every committed change of its rollups, connectors, domains, networks or TLS reports.
SELECT coalesce(sum(version), 0)::bigint
FROM report_versions
WHERE organization_id = $1
