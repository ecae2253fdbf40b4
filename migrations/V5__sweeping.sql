-- Sweeping: moving confirmed funds from deposit addresses to the treasury.
--
-- A sweep moves one or more deposit addresses' funds in one transaction; its items say
-- which payments (and how much of which asset) it carries; its attempts are the signed
-- transactions sent for it (a replacement is a new attempt with the same nonce). An
-- attempt is committed with its raw signed bytes before it is broadcast, so after a crash
-- the same bytes are sent again rather than a second transaction signed.

-- The next nonce of every address we send from, per chain. The row is locked while an
-- attempt is signed and stored, so nonces are handed out without gaps or reuse.
CREATE TABLE sender_nonces (
    chain      text NOT NULL,
    address    text NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
    next_nonce bigint NOT NULL CHECK (next_nonce >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, address)
);

CREATE TABLE sweeps (
    id           uuid PRIMARY KEY,
    chain        text NOT NULL,
    strategy     text NOT NULL CHECK (strategy IN ('self_paid', 'delegated', 'seeded')),
    state        text NOT NULL CHECK (state IN ('in_flight', 'confirmed', 'failed')),
    treasury     text NOT NULL CHECK (treasury ~ '^0x[0-9a-f]{40}$'),
    tx_hash      text,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz
);
CREATE INDEX sweeps_in_flight_idx ON sweeps (chain) WHERE state = 'in_flight';

CREATE TABLE sweep_items (
    sweep_id       uuid NOT NULL REFERENCES sweeps (id),
    chain          text NOT NULL,
    address        text NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
    -- 'native' for the chain's native asset, else the token contract.
    asset          text NOT NULL CHECK (asset = 'native' OR asset ~ '^0x[0-9a-f]{40}$'),
    amount_raw     numeric(78, 0) NOT NULL CHECK (amount_raw >= 0),
    -- True while the sweep is in flight: one active sweep per address and asset at most.
    active         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (sweep_id, address, asset)
);
CREATE UNIQUE INDEX sweep_items_one_active_idx ON sweep_items (chain, address, asset) WHERE active;

-- The payments a sweep settles (their settlement fields move with it).
CREATE TABLE sweep_payments (
    sweep_id   uuid NOT NULL REFERENCES sweeps (id),
    payment_id uuid NOT NULL REFERENCES payments (id),
    PRIMARY KEY (sweep_id, payment_id)
);
CREATE INDEX sweep_payments_payment_idx ON sweep_payments (payment_id);

CREATE TABLE sweep_attempts (
    id                       uuid PRIMARY KEY,
    sweep_id                 uuid NOT NULL REFERENCES sweeps (id),
    sender                   text NOT NULL CHECK (sender ~ '^0x[0-9a-f]{40}$'),
    nonce                    bigint NOT NULL CHECK (nonce >= 0),
    max_fee_per_gas          numeric(78, 0) NOT NULL,
    max_priority_fee_per_gas numeric(78, 0) NOT NULL,
    gas_limit                bigint NOT NULL,
    value_raw                numeric(78, 0) NOT NULL,
    raw_tx                   bytea NOT NULL,
    tx_hash                  text NOT NULL UNIQUE,
    -- 'sweep' moves the funds; 'seed' sends the deposit address the gas for a token
    -- transfer (its transfer is signed only once the seed is confirmed).
    -- 'deploy' deploys the EIP-7702 delegate for a treasury (a sweep with no items).
    purpose                  text NOT NULL DEFAULT 'sweep' CHECK (purpose IN ('sweep', 'seed', 'deploy')),
    state                    text NOT NULL
                                 CHECK (state IN ('signed', 'broadcast', 'mined', 'confirmed', 'replaced', 'dropped')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    broadcast_at             timestamptz,
    block_number             bigint,
    block_hash               text
);
CREATE INDEX sweep_attempts_sweep_idx ON sweep_attempts (sweep_id);

-- Why a payment's funds wait (dust: the fee would eat too much of them).
ALTER TABLE payments ADD COLUMN settlement_reason text;
-- Closed payments whose funds are not swept yet, per chain.
CREATE INDEX payments_unswept_idx ON payments (chain)
    WHERE status IN ('confirmed', 'expired', 'canceled') AND settlement_status IN ('unswept', 'skipped');

-- The gas tank signs from BIP-44 account 2147483647; no merchant may ever get it.
ALTER TABLE merchants ADD CONSTRAINT merchants_account_below_gas_tank
    CHECK (account_index < 2147483647);

-- A merchant's own treasury on a chain; without one, the chain's configured treasury.
CREATE TABLE merchant_treasuries (
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    chain       text NOT NULL,
    address     text NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, chain)
);
