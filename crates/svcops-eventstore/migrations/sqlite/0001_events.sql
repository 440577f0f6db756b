-- SQLite has one writer at a time, so positions commit in order; the outbox is kept for
-- the same relay contract as PostgreSQL.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    event_id        BLOB    NOT NULL,
    event_type      TEXT    NOT NULL,
    case_id         BLOB,
    actor_subject   TEXT    NOT NULL,
    actor_role      TEXT    NOT NULL,
    correlation_id  BLOB    NOT NULL,
    causation_id    BLOB,
    traceparent     TEXT,
    occurred_at     TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);

CREATE TABLE outbox (
    position INTEGER PRIMARY KEY
);

CREATE TABLE idempotency (
    key            TEXT    PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    first_version  INTEGER NOT NULL,
    last_version   INTEGER NOT NULL,
    recorded_at    TEXT    NOT NULL
);

CREATE TABLE checkpoints (
    name        TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL
);
