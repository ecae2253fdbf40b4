-- Money-path integrity: every issued address stays watched for a window after its
-- payment's last transition; transfers carry their block's timestamp (lateness is decided
-- by block time, not scan time) and when a reorg removed them; the cursor remembers the
-- head it last saw and the timestamp of the last scanned block; webhook claims carry a
-- fencing token.

-- When the payment last changed status (or announced late funds). Closed payments
-- (confirmed, expired, canceled) stay watched for the late-funds window after it.
ALTER TABLE payments ADD COLUMN transitioned_at timestamptz;
UPDATE payments SET transitioned_at = updated_at;
ALTER TABLE payments ALTER COLUMN transitioned_at SET NOT NULL;
ALTER TABLE payments ALTER COLUMN transitioned_at SET DEFAULT now();
CREATE INDEX payments_closed_watch_idx ON payments (chain, transitioned_at)
    WHERE status IN ('confirmed', 'expired', 'canceled');
DROP INDEX payments_expired_watch_idx;
-- Confirmed payments whose counted funds a reorg took away: a critical condition, counted
-- every confirmer tick.
CREATE INDEX payments_reversed_idx ON payments (chain)
    WHERE status = 'confirmed' AND amount_received_raw < amount_raw;

ALTER TABLE payment_transfers ADD COLUMN block_time timestamptz;
ALTER TABLE payment_transfers ADD COLUMN removed_at timestamptz;
UPDATE payment_transfers SET removed_at = detected_at WHERE removed;
-- Transfers a reorg removed keep their payment's address watched until re-checked.
CREATE INDEX payment_transfers_removed_idx ON payment_transfers (chain, removed_at) WHERE removed;

ALTER TABLE chain_cursors ADD COLUMN head_block bigint CHECK (head_block >= 0);
ALTER TABLE chain_cursors ADD COLUMN scanned_time timestamptz;

-- A claim's fencing token: an attempt is recorded only by the worker holding the newest
-- claim, so a late worker can never overwrite a newer state.
ALTER TABLE webhook_deliveries ADD COLUMN claim_token uuid;
-- Claims pick each endpoint's oldest due deliveries, up to its free slots.
CREATE INDEX webhook_deliveries_endpoint_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_inflight_idx ON webhook_deliveries (endpoint_id)
    WHERE claim_token IS NOT NULL;

-- Idempotency keys are purged after a day by a scheduled job.
