-- Remove the daily rollups of organization $1 on the UTC days $2 that count no message any more.
DELETE FROM daily_rollups
WHERE organization_id = $1
    AND day = ANY($2::date[])
    AND messages = 0
