-- Schema version 11: a WhatsApp sender's registration with Twilio's Senders API (JSON: the
-- WhatsApp Business Account id, the profile, whether a create's answer is outstanding, the
-- sender's Twilio status and why it is offline). NULL for numbers bought for SMS.
ALTER TABLE sender_numbers ADD COLUMN registration TEXT;
