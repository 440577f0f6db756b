//! Bad configuration fails fast, with a message that says what to fix.
#![allow(clippy::unwrap_used)]

use tests::binary;
use tokio::process::Command;

async fn start(env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(binary("front-office"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SVCOPS_") {
            command.env_remove(key);
        }
    }
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        command.envs(env.iter().copied()).output(),
    )
    .await
    .expect("exits promptly")
    .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn missing_settings_are_named() {
    let (code, stderr) = start(&[("SVCOPS_LISTEN", "127.0.0.1:0")]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("database_url"), "{stderr}");
}

#[tokio::test]
async fn a_missing_config_file_is_named() {
    let (code, stderr) = start(&[("SVCOPS_CONFIG", "/nonexistent/front-office.toml")]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("/nonexistent/front-office.toml"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_weak_token_secret_is_refused() {
    let (code, stderr) = start(&[
        ("SVCOPS_LISTEN", "127.0.0.1:0"),
        (
            "SVCOPS_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/unused",
        ),
        ("SVCOPS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        ("SVCOPS_TOKEN_SECRET", "short"),
    ])
    .await;
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.starts_with("front-office:"))
            .count(),
        1,
        "{stderr}"
    );
}

/// The settings the front office needs to get as far as its personal-data secret.
const UP_TO_THE_SECRET: [(&str, &str); 4] = [
    ("SVCOPS_LISTEN", "127.0.0.1:0"),
    (
        "SVCOPS_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/unused",
    ),
    ("SVCOPS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
    (
        "SVCOPS_TOKEN_SECRET",
        "a token secret that is long enough for HS256",
    ),
];

#[tokio::test]
async fn a_missing_personal_data_secret_is_named() {
    let (code, stderr) = start(&UP_TO_THE_SECRET).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("SVCOPS_PERSONAL_DATA_SECRET is not set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_weak_personal_data_secret_is_refused() {
    let mut env = UP_TO_THE_SECRET.to_vec();
    env.push(("SVCOPS_PERSONAL_DATA_SECRET", "short"));
    let (code, stderr) = start(&env).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("SVCOPS_PERSONAL_DATA_SECRET") && stderr.contains("at least 32 bytes"),
        "{stderr}"
    );
}

#[tokio::test]
async fn another_personal_data_secret_than_the_keys_were_stored_under_is_refused() {
    let server = std::env::var("SVCOPS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let url = format!("{server}/svcops_startup_{}", uuid::Uuid::new_v4().simple());
    let random_secret = || {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    };
    let store = svcops_eventstore::PostgresStore::connect(&url, 1)
        .await
        .expect("PostgreSQL");
    store
        .personal_data_keys(
            svcops_eventstore::PersonalDataSecret::new(random_secret().as_bytes()).unwrap(),
        )
        .await
        .expect("keys stored under a first secret");
    store.pool().close().await;

    let other = random_secret();
    let mut env = UP_TO_THE_SECRET.to_vec();
    env[1] = ("SVCOPS_DATABASE_URL", &url);
    env.push(("SVCOPS_PERSONAL_DATA_SECRET", &other));
    let (code, stderr) = start(&env).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("SVCOPS_PERSONAL_DATA_SECRET")
            && stderr.contains("another personal data secret"),
        "{stderr}"
    );
    use sqlx::migrate::MigrateDatabase;
    sqlx::Postgres::force_drop_database(&url)
        .await
        .expect("drop the test database");
}
