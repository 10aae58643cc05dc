-- Retention: whole message_facts partitions are dropped once every fact they may hold is older
-- than the fact retention, by the role that owns them (mailflow partitions maintain). The
-- service role may not call this: only the operator's scheduled command removes facts.
CREATE FUNCTION drop_message_fact_partition(month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := format('message_facts_%s',
                                  to_char(date_trunc('month', month), 'YYYYMM'));
BEGIN
    IF to_regclass(partition_name) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', partition_name);
    RETURN true;
END;
$$;

REVOKE EXECUTE ON FUNCTION drop_message_fact_partition(date) FROM PUBLIC;
