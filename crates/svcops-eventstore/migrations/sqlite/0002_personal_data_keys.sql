CREATE TABLE personal_data_keys (
    key_id      BLOB    PRIMARY KEY,
    subject     TEXT    UNIQUE,
    key         BLOB,
    created_at  TEXT    NOT NULL,
    erased_at   TEXT
);
