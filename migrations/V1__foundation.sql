-- Foundation schema: merchants, API keys, HD derivation allocation, payments and their
-- transfers, history and events (the webhook outbox), idempotency keys.
-- Money is NUMERIC(78,0) (fits 2^256-1 exactly); times are timestamptz (UTC).

-- A merchant owns one BIP-44 account: m/44'/60'/{account_index}'/0/{derivation_index}.
CREATE SEQUENCE merchant_account_seq AS integer MINVALUE 0 START WITH 0;

CREATE TABLE merchants (
    id            uuid PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    account_index integer NOT NULL UNIQUE CHECK (account_index >= 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Keys are high-entropy random strings, so a plain SHA-256 is enough; the lookup goes by
-- prefix and the hash is compared in constant time in the application.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL CHECK (length(key_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_merchant_idx ON api_keys (merchant_id);

-- The derivation-index allocation. Indices come from a per-merchant sequence
-- (deposit_index_{account_index}, created with the merchant): nextval never hands a value
-- out twice, even across rolled-back transactions, and takes no row lock, so concurrent
-- creates neither collide nor queue behind each other. This table records every index
-- handed to a payment and enforces uniqueness a second time.
CREATE TABLE deposit_addresses (
    merchant_id      uuid NOT NULL REFERENCES merchants (id),
    derivation_index integer NOT NULL CHECK (derivation_index >= 0),
    address          text NOT NULL UNIQUE CHECK (address ~ '^0x[0-9a-f]{40}$'),
    allocated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, derivation_index)
);

CREATE TABLE payments (
    id                     uuid PRIMARY KEY,
    merchant_id            uuid NOT NULL REFERENCES merchants (id),
    chain                  text NOT NULL,
    chain_id               bigint NOT NULL,
    asset_symbol           text NOT NULL,
    asset_contract         text CHECK (asset_contract ~ '^0x[0-9a-f]{40}$'),
    asset_decimals         smallint NOT NULL CHECK (asset_decimals BETWEEN 0 AND 77),
    address                text NOT NULL UNIQUE CHECK (address ~ '^0x[0-9a-f]{40}$'),
    derivation_index       integer NOT NULL,
    amount_raw             numeric(78, 0) NOT NULL CHECK (amount_raw > 0),
    amount_received_raw    numeric(78, 0) NOT NULL DEFAULT 0 CHECK (amount_received_raw >= 0),
    status                 text NOT NULL CHECK (status IN
                               ('pending', 'partially_paid', 'processing', 'confirmed', 'expired', 'canceled')),
    exception              text CHECK (exception IN ('underpaid', 'overpaid', 'paid_late')),
    confirmations_required integer NOT NULL CHECK (confirmations_required >= 0),
    confirmations          integer NOT NULL DEFAULT 0 CHECK (confirmations >= 0),
    order_id               text CHECK (length(order_id) <= 255),
    metadata               jsonb,
    created_at             timestamptz NOT NULL,
    expires_at             timestamptz NOT NULL,
    detected_at            timestamptz,
    confirmed_at           timestamptz,
    settlement_status      text NOT NULL DEFAULT 'unswept'
                               CHECK (settlement_status IN ('unswept', 'sweeping', 'swept', 'skipped')),
    settlement_tx_hash     text,
    -- The last event sequence number used for this payment; events count from 1.
    event_sequence         integer NOT NULL DEFAULT 0,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (merchant_id, derivation_index) REFERENCES deposit_addresses (merchant_id, derivation_index)
);
-- uuid v7 ids are time ordered: listing newest first is an index scan on (merchant, id).
CREATE INDEX payments_merchant_id_idx ON payments (merchant_id, id DESC);
CREATE INDEX payments_merchant_order_idx ON payments (merchant_id, order_id) WHERE order_id IS NOT NULL;
CREATE INDEX payments_watch_idx ON payments (chain, status)
    WHERE status IN ('pending', 'partially_paid', 'processing');

-- One row per on-chain transfer seen to a deposit address. Native transfers use log_index -1.
CREATE TABLE payment_transfers (
    id             bigserial PRIMARY KEY,
    payment_id     uuid NOT NULL REFERENCES payments (id),
    chain          text NOT NULL,
    tx_hash        text NOT NULL CHECK (tx_hash ~ '^0x[0-9a-f]{64}$'),
    log_index      integer NOT NULL CHECK (log_index >= -1),
    from_address   text NOT NULL CHECK (from_address ~ '^0x[0-9a-f]{40}$'),
    to_address     text NOT NULL CHECK (to_address ~ '^0x[0-9a-f]{40}$'),
    asset_contract text CHECK (asset_contract ~ '^0x[0-9a-f]{40}$'),
    amount_raw     numeric(78, 0) NOT NULL CHECK (amount_raw >= 0),
    block_number   bigint NOT NULL CHECK (block_number >= 0),
    block_hash     text NOT NULL CHECK (block_hash ~ '^0x[0-9a-f]{64}$'),
    -- false for a transfer of another asset to the deposit address: recorded, never summed.
    counted        boolean NOT NULL,
    removed        boolean NOT NULL DEFAULT false,
    late           boolean NOT NULL DEFAULT false,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain, tx_hash, log_index)
);
CREATE INDEX payment_transfers_payment_idx ON payment_transfers (payment_id);
CREATE INDEX payment_transfers_block_idx ON payment_transfers (chain, block_number);

CREATE TABLE payment_history (
    id          bigserial PRIMARY KEY,
    payment_id  uuid NOT NULL REFERENCES payments (id),
    from_status text,
    to_status   text NOT NULL,
    reason      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_history_payment_idx ON payment_history (payment_id, id);

-- The webhook outbox: written in the same transaction as the transition it reports.
CREATE TABLE events (
    id          text PRIMARY KEY CHECK (id ~ '^evt_[0-9a-z]+$'),
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    payment_id  uuid NOT NULL REFERENCES payments (id),
    type        text NOT NULL CHECK (type IN
                    ('payment.partially_paid', 'payment.processing', 'payment.confirmed', 'payment.expired',
                     'payment.canceled', 'payment.reorged', 'payment.late_funds', 'payment.swept')),
    sequence    integer NOT NULL CHECK (sequence >= 1),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payment_id, sequence)
);
CREATE INDEX events_created_idx ON events (created_at);

CREATE TABLE idempotency_keys (
    merchant_id     uuid NOT NULL REFERENCES merchants (id),
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    response_status smallint,
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
