-- Name organization $1 for row-level security until this transaction ends; return NULL instead
-- when the transaction already names another organization.
SELECT set_config('mailflow.organization_id', $1, true)
WHERE coalesce(nullif(current_setting('mailflow.organization_id', true), ''), $1) = $1
