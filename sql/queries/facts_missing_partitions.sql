-- The months among $1 whose message_facts partition does not exist yet.
SELECT month
FROM unnest($1::date[]) AS month
WHERE to_regclass(format('message_facts_%s', to_char(month, 'YYYYMM'))) IS NULL
