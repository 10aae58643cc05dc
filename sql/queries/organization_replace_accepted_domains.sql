-- Make the accepted domains of organization $1 exactly $2; return how many rows changed.
WITH wanted AS (
    SELECT DISTINCT domain
    FROM unnest($2::text[]) AS domain
),
removed AS (
    DELETE FROM accepted_domains
    WHERE organization_id = $1
        AND domain NOT IN (SELECT domain FROM wanted)
    RETURNING domain
),
added AS (
    INSERT INTO accepted_domains (organization_id, domain)
    SELECT
        $1,
        domain
    FROM wanted
    ON CONFLICT DO NOTHING
    RETURNING domain
)
SELECT (SELECT count(*) FROM removed) + (SELECT count(*) FROM added) AS changes
