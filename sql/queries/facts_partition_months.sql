-- The first days of the months that have a message_facts partition, oldest first.
SELECT
    to_date(substring(child.relname FROM 15), 'YYYYMM') AS month
FROM pg_catalog.pg_inherits AS inheritance
JOIN pg_catalog.pg_class AS child
    ON child.oid = inheritance.inhrelid
WHERE inheritance.inhparent = 'message_facts'::regclass
    AND child.relname ~ '^message_facts_[0-9]{6}$'
ORDER BY
    month
