-- See the PostgreSQL twin: event ids are unique; idempotency keys remember their request.
CREATE UNIQUE INDEX events_event_id ON events (event_id);
ALTER TABLE idempotency ADD COLUMN request_hash BLOB;
