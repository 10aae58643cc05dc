-- Wait for other sessions creating message_facts partitions (lock key $1) until this transaction ends.
SELECT pg_advisory_xact_lock($1::bigint)
