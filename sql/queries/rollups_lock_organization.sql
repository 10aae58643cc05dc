-- Wait for other rollup refreshes of organization $2 (lock class $1) until this transaction ends.
SELECT
    pg_advisory_xact_lock($1::integer, ($2::bigint % 2147483648)::integer),
    current_setting('transaction_isolation') AS isolation
