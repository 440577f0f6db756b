-- The log. `position` is a bigserial: taken at insert, not at commit, so positions can
-- become visible out of order; the outbox below is what makes publishing safe anyway.
CREATE TABLE events (
    position        bigserial PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    case_id         uuid,
    actor_subject   text        NOT NULL,
    actor_role      text        NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    traceparent     text,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    payload         bytea       NOT NULL,
    -- The optimistic-concurrency guard: two appends at the same expected version collide here.
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);

-- Positions of committed events not yet published to the bus. Inserted in the same
-- statement as the event; deleted by the relay after the broker acknowledged.
CREATE TABLE outbox (
    position bigint PRIMARY KEY
);

-- First result of every command carrying a request id (AIP-155), and of every consumed
-- event (the consumer's key), written in the same statement as the events it produced.
CREATE TABLE idempotency (
    key            text        PRIMARY KEY,
    stream_id      text        NOT NULL,
    first_version  bigint      NOT NULL,
    last_version   bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE checkpoints (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
