-- Trace context (W3C traceparent) of whatever caused each row, written in the same
-- transaction as the row, so a delivery span can link back to the request or tick that
-- produced its event, and an operator's timeline shows every step's trace id.
-- NULL when tracing is off or the step ran outside any span.
ALTER TABLE payments ADD COLUMN traceparent text;
ALTER TABLE payment_history ADD COLUMN traceparent text;
ALTER TABLE events ADD COLUMN traceparent text;
ALTER TABLE webhook_attempts ADD COLUMN traceparent text;
ALTER TABLE sweeps ADD COLUMN traceparent text;
ALTER TABLE payment_transfers ADD COLUMN traceparent text;
