-- worker: what it has processed, and the notifications it sent.

-- An event's effects and its row here commit together: an event is processed
-- at most once, and (with retries) at least once.
CREATE TABLE processed_events (
    event_id     UUID PRIMARY KEY,
    kind         TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   UUID NOT NULL UNIQUE,
    order_id   UUID NOT NULL,
    kind       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
