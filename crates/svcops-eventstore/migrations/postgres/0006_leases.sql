-- Leases for work that runs on one replica at a time (see `lease.rs`): the holder, when the
-- lease expires (database clock, unix milliseconds) and a fencing token that grows with
-- every take.
CREATE TABLE leases (
    name        text   PRIMARY KEY,
    holder      text   NOT NULL,
    token       bigint NOT NULL,
    expires_at  bigint NOT NULL
);
