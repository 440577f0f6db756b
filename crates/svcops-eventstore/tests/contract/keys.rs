//! The personal-data key port: the same suite shape, its port the key port and the key
//! table as stored.

use super::*;

contract_suite! {
    adapters: {
        postgres_keys => KeysOf<PostgresFixture>,
        sqlite_keys => KeysOf<SqliteFixture>,
    },
    cases: [
        a_subject_keeps_its_first_key,
        concurrent_first_uses_agree_on_one_key,
        erasure_destroys_the_key_for_good,
        many_keys_are_looked_up_at_once,
        the_key_table_holds_neither_subjects_nor_keys,
        keys_open_only_with_the_secret_they_were_stored_with,
        plain_rows_from_before_are_protected_at_start,
        a_key_is_found_by_each_of_its_subjects,
        a_subject_is_held_by_one_key,
        erasure_frees_every_subject_of_the_key,
        the_first_use_says_it_made_the_key,
        a_subject_added_while_its_key_is_destroyed_finds_nothing,
    ],
}

/// `key_for_subject` as the id and key (whether this call made it aside).
#[async_trait::async_trait]
trait KeyOf {
    async fn key_of(&self, subject: &str, new_key: &[u8]) -> Result<(Uuid, Vec<u8>), Error>;
}

#[async_trait::async_trait]
impl KeyOf for Keys {
    async fn key_of(&self, subject: &str, new_key: &[u8]) -> Result<(Uuid, Vec<u8>), Error> {
        let found = self.key_for_subject(subject, new_key).await?;
        Ok((found.key_id, found.key))
    }
}

/// A fresh secret per test: never a real one.
fn test_secret() -> PersonalDataSecret {
    PersonalDataSecret::new(
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).as_bytes(),
    )
    .expect("64 bytes is long enough")
}

/// One row of `personal_data_keys` as stored.
#[derive(Debug)]
struct KeyRow {
    key_id: Uuid,
    subject: Option<String>,
    key: Option<Vec<u8>>,
    subject_hash: Option<String>,
    wrapped_key: Option<Vec<u8>>,
}

const SELECT_KEY_ROWS: &str =
    "SELECT key_id, subject, key, subject_hash, wrapped_key FROM personal_data_keys";

fn key_row<R: sqlx::Row>(row: &R) -> KeyRow
where
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    KeyRow {
        key_id: row.get(0),
        subject: row.get(1),
        key: row.get(2),
        subject_hash: row.get(3),
        wrapped_key: row.get(4),
    }
}

/// What a key case needs of an adapter: the port over it, and the table behind it.
#[async_trait::async_trait]
trait KeyPort: Send + Sync {
    /// The port, opened now with `secret` (which is when the secret is checked and plain
    /// rows are protected).
    async fn try_keys(&self, secret: PersonalDataSecret) -> Result<Keys, Error>;

    async fn keys(&self, secret: PersonalDataSecret) -> Keys {
        self.try_keys(secret).await.expect("keys")
    }

    async fn rows(&self) -> Vec<KeyRow>;
    /// Writes a row the way the adapter did before subjects were hashed and keys wrapped.
    async fn insert_plain_row(&self, key_id: Uuid, subject: &str, key: &[u8]);
}

/// The key suite runs on the event store's fixtures, with the key port over the fixture's
/// adapter as its port.
struct KeysOf<F>(F);

/// An event-store fixture whose adapter has a key port.
trait HasKeys: ContractFixture {
    fn key_port(&self) -> Arc<dyn KeyPort>;
}

impl<F: HasKeys> ContractFixture for KeysOf<F> {
    type Port = Arc<dyn KeyPort>;

    async fn new() -> Self {
        Self(F::new().await)
    }

    fn port(&self) -> Arc<dyn KeyPort> {
        self.0.key_port()
    }

    async fn teardown(self) {
        self.0.teardown().await;
    }
}

/// The key port over PostgreSQL, and its table.
struct PostgresKeys(PostgresStore);

impl HasKeys for PostgresFixture {
    fn key_port(&self) -> Arc<dyn KeyPort> {
        Arc::new(PostgresKeys(self.store.clone()))
    }
}

#[async_trait::async_trait]
impl KeyPort for PostgresKeys {
    async fn try_keys(&self, secret: PersonalDataSecret) -> Result<Keys, Error> {
        Ok(Arc::new(self.0.personal_data_keys(secret).await?))
    }

    async fn rows(&self) -> Vec<KeyRow> {
        sqlx::query(SELECT_KEY_ROWS)
            .fetch_all(self.0.pool())
            .await
            .expect("read the key table")
            .iter()
            .map(key_row)
            .collect()
    }

    async fn insert_plain_row(&self, key_id: Uuid, subject: &str, key: &[u8]) {
        sqlx::query("INSERT INTO personal_data_keys (key_id, subject, key) VALUES ($1, $2, $3)")
            .bind(key_id)
            .bind(subject)
            .bind(key)
            .execute(self.0.pool())
            .await
            .expect("insert a plain row");
    }
}

/// The key port over SQLite, and its table in the store's file.
struct SqliteKeys {
    store: SqliteStore,
    path: std::path::PathBuf,
}

impl SqliteKeys {
    fn over(fixture: &SqliteFixture) -> Self {
        Self {
            store: fixture.store.clone(),
            path: fixture.dir.path().join("events.db"),
        }
    }

    /// A connection of its own, beside the store's.
    async fn raw(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(&self.path),
        )
        .await
        .expect("open the file")
    }
}

impl HasKeys for SqliteFixture {
    fn key_port(&self) -> Arc<dyn KeyPort> {
        Arc::new(SqliteKeys::over(self))
    }
}

#[async_trait::async_trait]
impl KeyPort for SqliteKeys {
    async fn try_keys(&self, secret: PersonalDataSecret) -> Result<Keys, Error> {
        Ok(Arc::new(self.store.personal_data_keys(secret).await?))
    }

    async fn rows(&self) -> Vec<KeyRow> {
        sqlx::query(SELECT_KEY_ROWS)
            .fetch_all(&mut self.raw().await)
            .await
            .expect("read the key table")
            .iter()
            .map(key_row)
            .collect()
    }

    async fn insert_plain_row(&self, key_id: Uuid, subject: &str, key: &[u8]) {
        sqlx::query(
            "INSERT INTO personal_data_keys (key_id, subject, key, created_at) \
             VALUES (?1, ?2, ?3, '2024-01-01T00:00:00Z')",
        )
        .bind(key_id)
        .bind(subject)
        .bind(key)
        .execute(&mut self.raw().await)
        .await
        .expect("insert a plain row");
    }
}

/// Whether `haystack` contains `needle` anywhere.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

mod cases {
    use svcops_eventstore::KeyState;

    pub use super::subject_cases::*;
    use super::*;

    pub async fn a_subject_keeps_its_first_key(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let (id, key) = keys.key_of("+8613800001234", &[1; 32]).await.expect("key");
        assert_eq!(key, vec![1; 32]);
        let (again, key) = keys.key_of("+8613800001234", &[2; 32]).await.expect("key");
        assert_eq!((again, key), (id, vec![1; 32]), "the first key stays");
        assert_eq!(
            keys.key(id).await.expect("lookup"),
            KeyState::Active(vec![1; 32])
        );
        assert_eq!(
            keys.subject_key_id("+8613800001234").await.expect("lookup"),
            Some(id)
        );
        assert_eq!(
            keys.key(Uuid::new_v4()).await.expect("lookup"),
            KeyState::Unknown
        );
        assert_eq!(
            keys.subject_key_id("+8613900000000").await.expect("lookup"),
            None,
            "looking a subject up creates no key"
        );
        let (other, _) = keys.key_of("+8613900000000", &[3; 32]).await.expect("key");
        assert_ne!(other, id);
    }

    pub async fn concurrent_first_uses_agree_on_one_key(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let tasks: Vec<_> = (0..8u8)
            .map(|n| {
                let keys = keys.clone();
                tokio::spawn(async move { keys.key_of("subject", &[n; 32]).await })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for task in tasks {
            seen.insert(task.await.expect("join").expect("key"));
        }
        assert_eq!(seen.len(), 1, "one key for one subject: {seen:?}");
    }

    pub async fn many_keys_are_looked_up_at_once(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let (active, _) = keys.key_of("kept", &[1; 32]).await.expect("key");
        let (erased, _) = keys.key_of("erased", &[2; 32]).await.expect("key");
        assert!(keys.destroy_key(erased).await.expect("destroy"));
        let unknown = Uuid::new_v4();
        let found = keys
            .keys(&[active, erased, unknown, active])
            .await
            .expect("lookup");
        assert_eq!(found.len(), 3, "one entry per id: {found:?}");
        assert_eq!(found[&active], KeyState::Active(vec![1; 32]));
        assert_eq!(found[&erased], KeyState::Erased);
        assert_eq!(found[&unknown], KeyState::Unknown);
        assert!(keys.keys(&[]).await.expect("lookup").is_empty());
    }

    pub async fn erasure_destroys_the_key_for_good(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let (id, _) = keys.key_of("erase-me", &[7; 32]).await.expect("key");
        assert!(keys.destroy_key(id).await.expect("destroy"));
        assert_eq!(keys.key(id).await.expect("lookup"), KeyState::Erased);
        assert_eq!(keys.subject_key_id("erase-me").await.expect("lookup"), None);
        assert!(
            !keys.destroy_key(id).await.expect("destroy again"),
            "destroying twice is harmless"
        );
        let (new_id, key) = keys.key_of("erase-me", &[8; 32]).await.expect("key");
        assert_ne!(new_id, id, "a returning subject gets a new key");
        assert_eq!(key, vec![8; 32]);
        assert_eq!(keys.key(id).await.expect("lookup"), KeyState::Erased);
        let row = port
            .rows()
            .await
            .into_iter()
            .find(|row| row.key_id == id)
            .expect("the erased row stays");
        assert!(
            row.subject_hash.is_none() && row.wrapped_key.is_none(),
            "nothing links an erased key to its subject: {row:?}"
        );
    }

    pub async fn the_key_table_holds_neither_subjects_nor_keys(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let (id, _) = keys.key_of("+8613800001234", &[9; 32]).await.expect("key");
        let rows = port.rows().await;
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.key_id, id);
        assert_eq!((&row.subject, &row.key), (&None, &None), "{row:?}");
        let subject_hash = row.subject_hash.as_deref().expect("subject hash");
        assert!(
            !subject_hash.contains("13800001234"),
            "the subject column holds the phone: {subject_hash}"
        );
        let wrapped = row.wrapped_key.as_deref().expect("wrapped key");
        assert!(
            !contains(wrapped, &[9; 8]),
            "the stored key bytes are the plain key: {wrapped:?}"
        );
    }

    pub async fn keys_open_only_with_the_secret_they_were_stored_with(port: Arc<dyn KeyPort>) {
        let secret = test_secret();
        let (id, _) = port
            .keys(secret.clone())
            .await
            .key_of("+8613800001234", &[5; 32])
            .await
            .expect("key");
        match port.try_keys(test_secret()).await {
            Err(Error::PersonalData(personal_data_secret::Error::Mismatch)) => {}
            Err(other) => panic!("another secret fails with the wrong error: {other}"),
            Ok(_) => panic!("another secret is accepted"),
        }
        assert_eq!(
            port.keys(secret).await.key(id).await.expect("lookup"),
            KeyState::Active(vec![5; 32]),
            "the secret the keys were stored under still opens them"
        );
    }

    pub async fn plain_rows_from_before_are_protected_at_start(port: Arc<dyn KeyPort>) {
        let id = Uuid::now_v7();
        port.insert_plain_row(id, "+8613800001234", &[4; 32]).await;
        let secret = test_secret();
        let keys = port.keys(secret.clone()).await;
        assert_eq!(
            keys.key(id).await.expect("lookup"),
            KeyState::Active(vec![4; 32]),
            "what was sealed before stays readable"
        );
        assert_eq!(
            keys.key_of("+8613800001234", &[6; 32]).await.expect("key"),
            (id, vec![4; 32]),
            "the subject keeps its key"
        );
        let rows = port.rows().await;
        assert_eq!(rows.len(), 1);
        assert_eq!((&rows[0].subject, &rows[0].key), (&None, &None), "{rows:?}");
        // Opening again (a restart) finds nothing plain left and changes nothing.
        let again = port.keys(secret).await;
        assert_eq!(
            again.key(id).await.expect("lookup"),
            KeyState::Active(vec![4; 32])
        );
    }
}

/// SQLite keeps the bytes of deleted and overwritten rows in free space unless
/// `secure_delete` is on; with it, an erased key's row leaves no trace in the file: neither
/// the wrapped key nor the subject's hash.
#[tokio::test]
async fn sqlite_erasure_leaves_no_trace_of_the_key_row_in_the_file() {
    let fixture = SqliteFixture::new().await;
    let port = SqliteKeys::over(&fixture);
    let keys = port.keys(test_secret()).await;
    let (id, _) = keys.key_of("+8613800001234", &[3; 32]).await.expect("key");
    let stored = port.rows().await.pop().expect("one row");
    let wrapped = stored.wrapped_key.expect("wrapped key");
    let subject_hash = stored.subject_hash.expect("subject hash");
    assert!(keys.destroy_key(id).await.expect("destroy"));
    drop(keys);
    fixture.store.close().await;
    {
        use sqlx::Connection;
        let mut raw = port.raw().await;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut raw)
            .await
            .expect("checkpoint");
        raw.close().await.expect("close");
    }
    for file in ["events.db", "events.db-wal"] {
        let Ok(bytes) = std::fs::read(fixture.dir.path().join(file)) else {
            continue;
        };
        // Any eight bytes in a row: the page reuses part of the freed space, not all of it.
        assert!(
            !wrapped.windows(8).any(|part| contains(&bytes, part)),
            "{file} still holds part of the erased key"
        );
        assert!(
            !subject_hash
                .as_bytes()
                .windows(8)
                .any(|part| contains(&bytes, part)),
            "{file} still holds part of the erased subject's hash"
        );
    }
}

mod subject_cases {
    use svcops_eventstore::{KeyState, SubjectClaim};

    use super::*;

    pub async fn a_key_is_found_by_each_of_its_subjects(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let (id, _) = keys.key_of("+8613800001234", &[1; 32]).await.expect("key");
        assert_eq!(
            keys.add_subject(id, "email:li@example.com")
                .await
                .expect("add"),
            SubjectClaim::Claimed
        );
        assert_eq!(
            keys.add_subject(id, "email:li@example.com")
                .await
                .expect("add again"),
            SubjectClaim::AlreadyHeld,
            "adding twice is harmless"
        );
        assert_eq!(
            keys.key_of("email:li@example.com", &[2; 32])
                .await
                .expect("key"),
            (id, vec![1; 32]),
            "the second subject finds the first one's key"
        );
        assert_eq!(
            keys.subject_key_id("email:li@example.com")
                .await
                .expect("lookup"),
            Some(id)
        );
        let rows = port.rows().await;
        assert_eq!(rows.len(), 1, "no second key: {rows:?}");
        // A claim taken back: the subject finds nothing, and may be claimed again.
        assert!(
            keys.remove_subject(id, "email:li@example.com")
                .await
                .expect("remove")
        );
        assert!(
            !keys
                .remove_subject(Uuid::now_v7(), "+8613800001234")
                .await
                .expect("remove another key's"),
            "another key's subject stays"
        );
        assert_eq!(
            keys.subject_key_id("email:li@example.com")
                .await
                .expect("lookup"),
            None
        );
        assert_eq!(
            keys.subject_key_id("+8613800001234").await.expect("lookup"),
            Some(id)
        );
    }

    pub async fn a_subject_is_held_by_one_key(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let (first, _) = keys.key_of("+8613800001234", &[1; 32]).await.expect("key");
        let (second, _) = keys.key_of("+8613900000000", &[2; 32]).await.expect("key");
        assert_eq!(
            keys.add_subject(second, "+8613800001234")
                .await
                .expect("add"),
            SubjectClaim::HeldBy(first)
        );
        assert_eq!(
            keys.add_subject(Uuid::now_v7(), "account:H-1")
                .await
                .expect("add"),
            SubjectClaim::NoKey,
            "a key never made holds nothing"
        );
        assert_eq!(
            keys.subject_key_id("account:H-1").await.expect("lookup"),
            None
        );
    }

    pub async fn erasure_frees_every_subject_of_the_key(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let (id, _) = keys.key_of("+8613800001234", &[1; 32]).await.expect("key");
        keys.add_subject(id, "email:li@example.com")
            .await
            .expect("add");
        assert!(keys.destroy_key(id).await.expect("destroy"));
        for subject in ["+8613800001234", "email:li@example.com"] {
            assert_eq!(
                keys.subject_key_id(subject).await.expect("lookup"),
                None,
                "{subject}"
            );
        }
        assert_eq!(
            keys.add_subject(id, "email:other@example.com")
                .await
                .expect("add"),
            SubjectClaim::NoKey,
            "an erased key takes no new subject"
        );
        let (new_id, _) = keys
            .key_of("email:li@example.com", &[3; 32])
            .await
            .expect("key");
        assert_ne!(new_id, id, "a returning subject gets a new key");
        assert_eq!(keys.key(id).await.expect("lookup"), KeyState::Erased);
    }

    pub async fn the_first_use_says_it_made_the_key(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        let first = keys
            .key_for_subject("+8613800001234", &[1; 32])
            .await
            .expect("key");
        assert!(first.created);
        let again = keys
            .key_for_subject("+8613800001234", &[2; 32])
            .await
            .expect("key");
        assert!(!again.created);
        assert_eq!(again.key_id, first.key_id);
    }

    pub async fn a_subject_added_while_its_key_is_destroyed_finds_nothing(port: Arc<dyn KeyPort>) {
        let keys = port.keys(test_secret()).await;
        for round in 0..20 {
            let (id, _) = keys
                .key_of(&format!("+86138000{round:05}"), &[1; 32])
                .await
                .expect("key");
            let subject = format!("email:{round}@example.com");
            let adding = {
                let (keys, subject) = (keys.clone(), subject.clone());
                tokio::spawn(async move { keys.add_subject(id, &subject).await })
            };
            let destroying = {
                let keys = keys.clone();
                tokio::spawn(async move { keys.destroy_key(id).await })
            };
            adding.await.expect("join").expect("add");
            destroying.await.expect("join").expect("destroy");
            assert_eq!(
                keys.subject_key_id(&subject).await.expect("lookup"),
                None,
                "round {round}: a subject points at an erased key"
            );
        }
    }
}
