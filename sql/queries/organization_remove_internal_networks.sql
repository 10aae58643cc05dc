-- Remove the declared internal networks $2 from organization $1.
DELETE FROM internal_networks
WHERE organization_id = $1
    AND network = ANY($2::cidr[])
