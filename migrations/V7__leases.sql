-- Chain leadership for several gateway processes on one database. One lease per chain:
-- the replica holding it runs the chain's scanner, confirmer and sweeper. `token` grows at
-- every takeover and is the fencing token: a chain worker's connection carries
-- `ctrip.fence = '<lease>@<token>'`, and every write it makes to a table the chain workers
-- own is refused unless that token still holds the unexpired lease. A paused or
-- partitioned former leader therefore cannot write after a takeover.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    token       bigint NOT NULL CHECK (token >= 1),
    acquired_at timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Refuses the statement when the session is fenced (`ctrip.fence` set) and its token no
-- longer holds the lease. FOR SHARE makes a takeover (an UPDATE of the lease row) wait for
-- the fenced transactions in flight, and every later fenced transaction of the old term fail.
CREATE FUNCTION ctrip_check_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    f text := current_setting('ctrip.fence', true);
BEGIN
    IF f IS NULL OR f = '' THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM leases
     WHERE name = split_part(f, '@', 1)
       AND token = NULLIF(split_part(f, '@', 2), '')::bigint
       AND expires_at > clock_timestamp()
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fenced: % no longer holds its lease', f USING ERRCODE = 'CT001';
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['chain_cursors', 'scanned_blocks', 'payment_transfers', 'payments',
        'payment_history', 'events', 'webhook_deliveries', 'sender_nonces', 'sweeps',
        'sweep_items', 'sweep_payments', 'sweep_attempts']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION ctrip_check_fence()',
                       t || '_fence', t);
    END LOOP;
END
$$;

-- Replicas seen recently (each lease keeper marks its replica on every tick), so that a
-- replica takes at most its fair share of the chains and gives up what exceeds it: chains
-- spread over the replicas that are up.
CREATE TABLE replicas (
    id      text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
