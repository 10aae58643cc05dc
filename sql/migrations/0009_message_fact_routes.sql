-- A message fact keeps the names its source gave the route it took (an Exim router and
-- transport, an Exchange connector, a record's connector), so that `mailflow reclassify` can
-- match connectors by route as ingest did. NULL: no route named, or a fact stored before this.
ALTER TABLE message_facts
    ADD COLUMN routes text[];
