-- Drop the message_facts partition of the month that holds $1; false when there is none.
SELECT drop_message_fact_partition($1::date)
