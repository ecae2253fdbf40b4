-- Where the payer's page sends the payer once the payment is confirmed (set by the merchant
-- at creation; http or https only, checked by the API).
ALTER TABLE payments ADD COLUMN return_url text CHECK (length(return_url) <= 2048);
