-- A transaction-scoped table that a batch of message facts is copied into, then merged from.
CREATE TEMPORARY TABLE incoming_message_facts (
    LIKE message_facts
)
ON COMMIT DROP
