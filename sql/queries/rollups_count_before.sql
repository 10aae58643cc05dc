-- The number of daily rollups of organization $1 on UTC days before $2.
SELECT count(*)
FROM daily_rollups
WHERE organization_id = $1
    AND day < $2::date
