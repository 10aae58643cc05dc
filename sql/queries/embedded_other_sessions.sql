-- Count the client sessions other than the server's own (application_name $1), such as an
-- ingest that shares the embedded database.
SELECT count(*)
FROM pg_stat_activity
WHERE backend_type = 'client backend'
    AND pid <> pg_backend_pid()
    AND application_name IS DISTINCT FROM $1
