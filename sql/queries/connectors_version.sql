-- A digest of the connectors of organization $1 and of when each last changed: it differs after
-- any create, update or delete.
SELECT md5(coalesce(string_agg(id::text || '@' || updated_at::text, ',' ORDER BY id), ''))
FROM connectors
WHERE organization_id = $1
