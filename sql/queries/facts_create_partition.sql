-- Create the message_facts partition of the month that holds $1, unless it exists.
SELECT ensure_message_fact_partition($1::date)
