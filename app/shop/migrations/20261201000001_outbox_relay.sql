-- The outbox relayed to a broker: orders' relay marks an event published once
-- the broker confirmed it. Events processed before (by a worker polling the
-- outbox, with no broker) count as published, so a relay started later does
-- not send them again.
ALTER TABLE outbox ADD COLUMN published_at TIMESTAMPTZ;
UPDATE outbox SET published_at = processed_at WHERE processed_at IS NOT NULL;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
