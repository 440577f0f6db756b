-- A transaction has its transaction id before it draws a position. Projections rely on it
-- to tell when every position up to some point is settled (committed or never will be)
-- without making writers wait for each other: a position at or below the newest visible one
-- was drawn before that one, so by a transaction that was, at the time of the snapshot,
-- committed, rolled back or running with an id, and so holding the lock on its id that
-- `pg_locks` shows (see `projection::Horizon` and `PostgresStore::log_snapshot`). Without
-- it a position could be drawn in the instant before the inserting transaction gets its id,
-- by a transaction nothing lists. (The sequence keeps CACHE 1, so positions are drawn in
-- increasing order across sessions.)
ALTER TABLE events ALTER COLUMN position
    SET DEFAULT CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('events_position_seq') END;

-- Every generation of every projection (read model): the live one readers see, one being
-- built beside it, and replaced ones until their tables are dropped. The checkpoint moves in
-- the same transaction as the rows of each batch.
CREATE TABLE projections (
    name        text   NOT NULL,
    generation  bigint NOT NULL,
    version     bigint NOT NULL,
    status      text   NOT NULL CHECK (status IN ('building', 'live', 'retired')),
    checkpoint  bigint NOT NULL,
    updated_at  bigint NOT NULL, -- unix milliseconds
    PRIMARY KEY (name, generation)
);

-- At most one live generation per projection.
CREATE UNIQUE INDEX projections_one_live ON projections (name) WHERE status = 'live';
