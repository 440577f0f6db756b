-- The log of every topic. `position` is the message's offset: global across topics,
-- increasing with each commit (one writer), never reused (AUTOINCREMENT).
CREATE TABLE bus_messages (
    position  INTEGER PRIMARY KEY AUTOINCREMENT,
    topic     TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    -- Length-prefixed name/value pairs, see `embedded::encode_headers`.
    headers   BLOB    NOT NULL,
    payload   BLOB    NOT NULL
);

CREATE INDEX bus_messages_topic_position ON bus_messages (topic, position);

-- The last acknowledged offset of each consumer group on each topic.
CREATE TABLE bus_consumer_offsets (
    group_id  TEXT    NOT NULL,
    topic     TEXT    NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic)
);
