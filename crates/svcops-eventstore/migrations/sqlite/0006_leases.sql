-- Leases for work that runs on one replica at a time (see `lease.rs`): the holder, when the
-- lease expires (database clock, unix milliseconds) and a fencing token that grows with
-- every take.
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    token       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
