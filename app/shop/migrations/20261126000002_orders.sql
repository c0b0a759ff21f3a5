-- orders: idempotency records, orders and the transactional outbox.

-- A client's Idempotency-Key claims a slot; the first request does the work and
-- stores its response, later ones with the same key get that response back.
CREATE TABLE idempotency_keys (
    key             TEXT PRIMARY KEY,
    request_hash    TEXT NOT NULL,
    order_id        UUID NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    locked_until    TIMESTAMPTZ NOT NULL,
    response_status SMALLINT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ
);

CREATE TABLE orders (
    id              UUID PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('paid', 'payment_pending', 'payment_failed')),
    amount_cents    BIGINT NOT NULL CHECK (amount_cents >= 0),
    payment_id      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    order_id         UUID NOT NULL REFERENCES orders (id),
    product_id       BIGINT NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, product_id)
);

-- Written in the same transaction as the order. trace_context holds the W3C
-- carrier (traceparent, tracestate) of the request that wrote it.
CREATE TABLE outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      UUID NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    aggregate_id  UUID NOT NULL,
    payload       JSONB NOT NULL,
    trace_context JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    available_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    processed_at  TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (available_at, id) WHERE processed_at IS NULL;
