-- One data key per data subject (e.g. a customer's phone). Erasure clears `subject` and
-- `key`: whatever was sealed with the key becomes unreadable, the log itself is untouched.
CREATE TABLE personal_data_keys (
    key_id      uuid        PRIMARY KEY,
    subject     text        UNIQUE,
    key         bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz
);
