-- The extended public key of each merchant account's external chain, as the signer gave
-- it: the API derives deposit addresses from these alone, and can keep doing so while the
-- signer is away. The signer stays the authority (a copy that contradicts it is refused).
CREATE TABLE account_keys (
    account_index bigint PRIMARY KEY CHECK (account_index >= 0),
    xpub          text NOT NULL CHECK (xpub ~ '^xpub[1-9A-HJ-NP-Za-km-z]{100,112}$'),
    created_at    timestamptz NOT NULL DEFAULT now()
);
