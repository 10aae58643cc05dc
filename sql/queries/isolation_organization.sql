-- Act as the service role $1 on the rows of organization $2 alone until this transaction ends.
SELECT
    set_config('role', $1, true),
    set_config('mailflow.organization_id', $2, true)
