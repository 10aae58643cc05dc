-- Make the declared internal networks of organization $1 exactly $2; return how many rows changed.
WITH wanted AS (
    SELECT DISTINCT network
    FROM unnest($2::cidr[]) AS network
),
removed AS (
    DELETE FROM internal_networks
    WHERE organization_id = $1
        AND network NOT IN (SELECT network FROM wanted)
    RETURNING network
),
added AS (
    INSERT INTO internal_networks (organization_id, network)
    SELECT
        $1,
        network
    FROM wanted
    ON CONFLICT DO NOTHING
    RETURNING network
)
SELECT (SELECT count(*) FROM removed) + (SELECT count(*) FROM added) AS changes
