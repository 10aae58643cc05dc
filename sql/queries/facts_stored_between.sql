-- Whether organization $1 has a stored message fact from $2 to $3, both included: when it has
-- none, no fact of that span can be a duplicate.
SELECT EXISTS (
    SELECT
    FROM message_facts
    WHERE organization_id = $1
        AND occurred_at BETWEEN $2 AND $3
)
