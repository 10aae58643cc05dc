-- A token carries a role: viewer reads reports, admin also manages the organization,
-- ingest only pushes message facts. Tokens minted before roles existed read reports.
ALTER TABLE api_tokens
    ADD COLUMN role text NOT NULL DEFAULT 'viewer'
        CHECK (role IN ('viewer', 'admin', 'ingest'));
