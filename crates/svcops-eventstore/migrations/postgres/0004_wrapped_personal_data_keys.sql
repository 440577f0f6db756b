-- Subjects are stored as a keyed hash (HMAC-SHA256) and data keys wrapped (AES-256-GCM),
-- both with keys derived from the personal data secret, which is held outside the database:
-- the table lists nobody's phone, and a key destroyed by erasure cannot be read back from
-- old row versions or backups. Rows written before (plain `subject` and `key`) are moved to
-- the new columns by the adapter when it starts with the secret; the old columns then stay
-- NULL.
ALTER TABLE personal_data_keys ADD COLUMN subject_hash text;
ALTER TABLE personal_data_keys ADD COLUMN wrapped_key bytea;
CREATE UNIQUE INDEX personal_data_keys_subject_hash ON personal_data_keys (subject_hash);

-- One row, derived from the secret (not reversible to it): starting with another secret
-- fails at once, instead of on every sealed phone.
CREATE TABLE personal_data_secret_check (
    id          smallint PRIMARY KEY CHECK (id = 1),
    fingerprint bytea NOT NULL
);
