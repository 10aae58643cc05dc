"""The database: connections, migrations, organizations, facts and tokens."""
