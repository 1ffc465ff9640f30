-- Schema version 8: no provider-id index. Status callbacks and SES events name our message
-- themselves (the StatusCallback URL, the email tags), so nothing looks a message up by its
-- provider's id any more; the provider id stays in the message row.
DROP INDEX provider_message_ids_message;
DROP TABLE provider_message_ids;
