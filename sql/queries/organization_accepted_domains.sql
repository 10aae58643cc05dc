-- The accepted domains of organization $1, sorted.
SELECT domain
FROM accepted_domains
WHERE organization_id = $1
ORDER BY domain
