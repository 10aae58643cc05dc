-- Remove the daily rollups of organization $1 on the UTC days $2.
DELETE FROM daily_rollups
WHERE organization_id = $1
    AND day = ANY($2::date[])
