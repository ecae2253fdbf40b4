-- Chain ingestion: a per-chain scan cursor that advances only in the transaction that
-- writes the scanned range's results, and the recent block hashes used to detect reorgs.

CREATE TABLE chain_cursors (
    chain      text PRIMARY KEY,
    -- The next block to scan.
    next_block bigint NOT NULL CHECK (next_block >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scanned_blocks (
    chain       text NOT NULL,
    number      bigint NOT NULL CHECK (number >= 0),
    hash        text NOT NULL CHECK (hash ~ '^0x[0-9a-f]{64}$'),
    parent_hash text NOT NULL CHECK (parent_hash ~ '^0x[0-9a-f]{64}$'),
    PRIMARY KEY (chain, number)
);

-- The watched set: open payments plus expired ones still inside the late-funds window.
CREATE INDEX payments_expired_watch_idx ON payments (chain, expires_at) WHERE status = 'expired';
CREATE INDEX payments_open_expiry_idx ON payments (chain, expires_at)
    WHERE status IN ('pending', 'partially_paid');
