//! Database errors are sorted by whose fault they are: the data's (`Rejected`, never worth
//! retrying, so a consumer dead-letters the message) or the database's (`Unavailable`, an
//! outage a consumer waits out). Real servers produce the errors.

use sqlx::Connection;
use svcops_eventstore::Error;

fn postgres_server() -> String {
    std::env::var("SVCOPS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

#[track_caller]
fn assert_rejected(error: sqlx::Error) {
    let error = Error::from(error);
    assert!(
        matches!(error, Error::Rejected(_)) && !error.is_transient(),
        "{error:?}"
    );
}

#[tokio::test]
async fn postgres_data_and_constraint_errors_are_rejected_and_outages_unavailable() {
    let url = format!("{}/test", postgres_server().trim_end_matches('/'));
    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .expect("PostgreSQL reachable (DESIGN §7)");
    // Class 22: a data exception (here invalid text for a type; NUL in text is 22021).
    assert_rejected(
        sqlx::query("SELECT 'not a number'::int")
            .execute(&mut connection)
            .await
            .expect_err("22P02"),
    );
    assert_rejected(
        sqlx::query("SELECT convert_from('\\x00'::bytea, 'UTF8')")
            .execute(&mut connection)
            .await
            .expect_err("22021"),
    );
    // Class 23: a constraint.
    sqlx::query("CREATE TEMPORARY TABLE once (id int PRIMARY KEY)")
        .execute(&mut connection)
        .await
        .expect("temporary table");
    sqlx::query("INSERT INTO once VALUES (1)")
        .execute(&mut connection)
        .await
        .expect("first row");
    assert_rejected(
        sqlx::query("INSERT INTO once VALUES (1)")
            .execute(&mut connection)
            .await
            .expect_err("23505"),
    );
    // An outage: nothing listens there.
    let unreachable = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("refused");
    let error = Error::from(unreachable);
    assert!(
        matches!(error, Error::Unavailable(_)) && error.is_transient(),
        "{error:?}"
    );
}

#[tokio::test]
async fn sqlite_constraint_errors_are_rejected() {
    let mut connection = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite");
    sqlx::query("CREATE TABLE once (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&mut connection)
        .await
        .expect("table");
    sqlx::query("INSERT INTO once VALUES (1, 'a')")
        .execute(&mut connection)
        .await
        .expect("first row");
    assert_rejected(
        sqlx::query("INSERT INTO once VALUES (1, 'b')")
            .execute(&mut connection)
            .await
            .expect_err("unique"),
    );
    assert_rejected(
        sqlx::query("INSERT INTO once VALUES (2, NULL)")
            .execute(&mut connection)
            .await
            .expect_err("not null"),
    );
}
