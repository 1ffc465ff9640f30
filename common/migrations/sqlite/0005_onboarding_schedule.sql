-- Schema version 5: when each tenant's 10DLC onboarding workflow is next due.

-- The onboarding runner picks brands whose workflow is due (a step to take, a retry after a
-- Twilio outage, a status poll while the brand is under review); NULL: nothing scheduled
-- (ready, rejected and waiting for the tenant, or needing an operator).
ALTER TABLE brands ADD COLUMN workflow_due_at INTEGER;

CREATE INDEX brands_workflow_due ON brands (workflow_due_at) WHERE workflow_due_at IS NOT NULL;
