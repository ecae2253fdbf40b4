-- Webhook endpoints, deliveries (one per event and matching endpoint, created in the same
-- transaction as the event) and the attempt log.

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    merchant_id          uuid NOT NULL REFERENCES merchants (id),
    url                  text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description          text CHECK (length(description) <= 500),
    -- Subscribed event types; empty means every type.
    events               text[] NOT NULL DEFAULT '{}',
    -- The signing secret must be usable to sign, so it is stored as issued (whsec_...).
    secret               text NOT NULL,
    -- During a rotation's grace period the previous secret signs too.
    previous_secret      text,
    previous_expires_at  timestamptz,
    status               text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason      text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz
);
CREATE INDEX webhook_endpoints_merchant_idx ON webhook_endpoints (merchant_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_id        text NOT NULL REFERENCES events (id),
    merchant_id     uuid NOT NULL REFERENCES merchants (id),
    payment_id      uuid NOT NULL,
    -- The event's per-payment sequence: deliveries of one payment to one endpoint go in order.
    sequence        integer NOT NULL,
    event_type      text NOT NULL,
    -- pending: due (never tried, or redelivery requested); failed: the last attempt failed and
    -- a retry is scheduled; succeeded; dead: retries exhausted (or the endpoint answered 410).
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed', 'succeeded', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (endpoint_id, payment_id, sequence)
    WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_merchant_idx ON webhook_deliveries (merchant_id, id DESC);

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at timestamptz NOT NULL,
    http_status  smallint,
    latency_ms   integer NOT NULL,
    error        text
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);
