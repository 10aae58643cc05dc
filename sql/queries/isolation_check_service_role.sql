-- The role this session logged in as, and whether the service role $1 would pass by row-level
-- security (NULL when it does not exist).
SELECT
    session_user AS login,
    (
        SELECT rolsuper OR rolbypassrls
        FROM pg_roles
        WHERE rolname = $1
    ) AS bypasses_row_security
