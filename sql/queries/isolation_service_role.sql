-- Act as the service role $1 until this transaction ends: no organization's rows until one is
-- named.
SELECT set_config('role', $1, true)
