-- A connector may be selected by the name the mail server gave the route it took (an Exim
-- router or transport, an Exchange connector): names compared without regard to case.
ALTER TABLE connectors
    ADD COLUMN routes text[] NOT NULL DEFAULT '{}';
