-- Every replica keeps the API keys it has verified in memory, so that a request does not
-- cost a query to authenticate. Any change to a key row (a revocation, a deletion) tells
-- every listening replica at commit, naming the key's prefix; a replica drops that entry
-- and reads the row again on its next use.
CREATE FUNCTION ctrip_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ctrip_api_keys', OLD.prefix);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION ctrip_api_key_changed();

-- The fence check runs only for fenced sessions (the chain workers'): deciding that in the
-- trigger's WHEN spares every other write (the API's, the dispatchers') a function call.
-- Same rule as the function's own early return: an unset or empty fence is not checked.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['chain_cursors', 'scanned_blocks', 'payment_transfers', 'payments',
        'payment_history', 'events', 'webhook_deliveries', 'sender_nonces', 'sweeps',
        'sweep_items', 'sweep_payments', 'sweep_attempts']
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %I', t || '_fence', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH STATEMENT '
                       'WHEN (current_setting(''ctrip.fence'', true) <> '''') '
                       'EXECUTE FUNCTION ctrip_check_fence()',
                       t || '_fence', t);
    END LOOP;
END
$$;

-- A payment's merchant is already guaranteed by its deposit address (the composite key
-- references deposit_addresses, whose merchant_id references merchants). The direct key
-- made every create lock the merchant's row a second time, and concurrent creates of one
-- merchant share that lock.
ALTER TABLE payments DROP CONSTRAINT payments_merchant_id_fkey;

-- Each payment carries a copy of its history, so that reading a payment costs one index
-- scan fewer. `payment_history` stays the record (with each row's trace context); the
-- copy is written by the same statement (creation) or transaction (every transition) as
-- the history row, with the same time.
ALTER TABLE payments ADD COLUMN history jsonb NOT NULL DEFAULT '[]';
UPDATE payments p SET history = h.history
  FROM (SELECT payment_id,
               jsonb_agg(jsonb_build_object('from', from_status, 'to', to_status, 'at', at,
                                            'reason', reason) ORDER BY id) AS history
          FROM payment_history GROUP BY payment_id) h
 WHERE h.payment_id = p.id;
