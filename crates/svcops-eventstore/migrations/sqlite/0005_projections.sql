-- Every generation of every projection (read model): the live one readers see, one being
-- built beside it, and replaced ones until their tables are dropped. The checkpoint moves in
-- the same transaction as the rows of each batch. (SQLite has one writer, so positions
-- already commit in order.)
CREATE TABLE projections (
    name        TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('building', 'live', 'retired')),
    checkpoint  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL, -- unix milliseconds
    PRIMARY KEY (name, generation)
);

CREATE UNIQUE INDEX projections_one_live ON projections (name) WHERE status = 'live';
