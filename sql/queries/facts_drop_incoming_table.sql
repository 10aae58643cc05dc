-- Drop the batch table now, so the same transaction can store another batch.
DROP TABLE incoming_message_facts
