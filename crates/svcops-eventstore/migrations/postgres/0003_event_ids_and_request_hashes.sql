-- Event ids are unique, so an append retried after an ambiguous failure (its commit went
-- through but the reply was lost) recognises its own events instead of colliding with them.
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- A fingerprint of the request that first used an idempotency key: the same key with a
-- different request is refused instead of silently answered with the first result.
ALTER TABLE idempotency ADD COLUMN request_hash bytea;
