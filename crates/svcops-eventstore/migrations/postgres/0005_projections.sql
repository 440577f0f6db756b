-- Positions commit in position order: every position is drawn under one transaction-level
-- advisory lock, held until the drawing transaction ends. A transaction with a higher
-- position therefore commits after every lower one, and "events after my checkpoint" is a
-- safe way to tail the log (projections). The lock is taken once per transaction (later
-- calls re-enter it) and only by transactions that write events.
CREATE FUNCTION svcops_next_position() RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7379626301); -- 'svcops.events.position'
    RETURN nextval('events_position_seq');
END
$$;

ALTER TABLE events ALTER COLUMN position SET DEFAULT svcops_next_position();

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
