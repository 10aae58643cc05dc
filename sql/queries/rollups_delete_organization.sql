-- Remove every daily rollup of organization $1.
DELETE FROM daily_rollups
WHERE organization_id = $1
