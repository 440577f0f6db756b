-- Every subject that finds a key (a customer's phones, emails, account number), as a keyed
-- hash like `personal_data_keys.subject_hash`. A key may have many subjects; a subject has
-- one key, which makes this table the one place find-or-create by any of them agrees on.
-- `personal_data_keys.subject_hash` stays as the subject a key was made for. Erasure
-- deletes a key's rows here.
CREATE TABLE personal_data_subjects (
    subject_hash TEXT PRIMARY KEY,
    key_id       BLOB NOT NULL
);
CREATE INDEX personal_data_subjects_by_key ON personal_data_subjects (key_id);
INSERT INTO personal_data_subjects (subject_hash, key_id)
    SELECT subject_hash, key_id FROM personal_data_keys WHERE subject_hash IS NOT NULL;
