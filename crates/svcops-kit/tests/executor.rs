//! The command executor on a real store (SQLite): decide on the current state, append at
//! its version, retry lost races, answer repeated idempotency keys with the first result.

use std::sync::Arc;

use svcops_eventstore::{EventStore, SqliteStore};
use svcops_kit::aggregate::{
    Aggregate, DecodeError, DomainEvent, ErrorStatus, ExecuteError, Executor, Idempotency, Recorded,
};
use svcops_kit::events::CommandContext;
use svcops_kit::{ApiError, Principal, Role};
use tokio::sync::Notify;
use uuid::Uuid;

/// A counter that refuses to pass its limit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counter {
    value: u32,
    last_by: String,
}

#[derive(Debug, Clone, Copy)]
struct Add {
    amount: u8,
    limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Added(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the counter would pass {0}")]
struct OverLimit(u32);

impl ErrorStatus for OverLimit {
    fn api_error(&self) -> ApiError {
        ApiError::FailedPrecondition(self.to_string())
    }
}

const ADDED: &str = "svcops.test.v1.Added";

impl DomainEvent for Added {
    fn encode(&self) -> (String, Vec<u8>) {
        (ADDED.to_owned(), vec![self.0])
    }

    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        if event_type != ADDED {
            return Ok(None);
        }
        match payload {
            [amount] => Ok(Some(Added(*amount))),
            _ => Err(DecodeError::new(event_type, "one byte expected")),
        }
    }
}

impl Aggregate for Counter {
    const KIND: &'static str = "counter";
    type Command = Add;
    type Event = Added;
    type Error = OverLimit;

    fn decide(&self, command: Add) -> Result<Vec<Added>, OverLimit> {
        if command.amount == 0 {
            return Ok(vec![]);
        }
        if self.value + u32::from(command.amount) > command.limit {
            return Err(OverLimit(command.limit));
        }
        Ok(vec![Added(command.amount)])
    }

    fn apply(&mut self, recorded: &Recorded<Added>) {
        self.value += u32::from(recorded.event.0);
        self.last_by = recorded.actor_subject.clone();
    }
}

fn context() -> CommandContext {
    CommandContext::from_caller(Principal {
        subject: "alice".into(),
        role: Role::Agent,
    })
}

async fn executor() -> (Executor<Counter>, Arc<dyn EventStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(&dir.path().join("events.db"))
            .await
            .expect("store"),
    );
    (
        Executor::new(store.clone(), Arc::new(Notify::new())),
        store,
        dir,
    )
}

#[tokio::test]
async fn commands_decide_on_the_current_state_and_append_at_its_version() {
    let (counter, store, _dir) = executor().await;
    let id = Uuid::now_v7();
    let add = |amount| Add { amount, limit: 10 };
    let first = counter
        .execute(id, None, &context(), add(4), Idempotency::none())
        .await
        .expect("first");
    assert_eq!(
        (first.state.value, first.version, first.appended),
        (4, 1, true)
    );
    assert_eq!(
        first.state.last_by, "alice",
        "apply sees the recorded actor"
    );
    let second = counter
        .execute(id, None, &context(), add(5), Idempotency::none())
        .await
        .expect("second");
    assert_eq!((second.state.value, second.version), (9, 2));

    // A refusal appends nothing and keeps its status.
    match counter
        .execute(id, None, &context(), add(5), Idempotency::none())
        .await
    {
        Err(ExecuteError::Domain(OverLimit(10))) => {}
        other => panic!("expected the domain's refusal, got {other:?}"),
    }
    let status = tonic::Status::from(ApiError::from(ExecuteError::Domain(OverLimit(10))));
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    // A no-op decision appends nothing either.
    let noop = counter
        .execute(id, None, &context(), add(0), Idempotency::none())
        .await
        .expect("no-op");
    assert!(!noop.appended);
    assert_eq!(
        svcops_eventstore::read_whole_stream(store.as_ref(), &Counter::stream(id))
            .await
            .expect("read")
            .len(),
        2
    );
}

#[tokio::test]
async fn a_repeated_key_returns_the_first_result_and_another_request_is_refused() {
    let (counter, _store, _dir) = executor().await;
    let id = Uuid::now_v7();
    let add = Add {
        amount: 3,
        limit: 100,
    };
    let key = || Idempotency::key("test/add/r-1").with_request_hash(vec![1]);
    let first = counter
        .execute(id, None, &context(), add, key())
        .await
        .expect("first");
    let again = counter
        .execute(id, None, &context(), add, key())
        .await
        .expect("again");
    assert!(first.appended && !again.appended);
    assert_eq!(again.state.value, 3, "nothing appended twice");
    // A retry that minted a new id (a retried "open") gets the first command's aggregate.
    let minted = counter
        .execute(Uuid::now_v7(), None, &context(), add, key())
        .await
        .expect("retry under a new id");
    assert!(!minted.appended);
    assert_eq!(minted.stream_id, Counter::stream(id));
    assert_eq!((minted.state.value, minted.version), (3, 1));
    let reused = counter
        .execute(
            id,
            None,
            &context(),
            add,
            Idempotency::key("test/add/r-1").with_request_hash(vec![2]),
        )
        .await
        .expect_err("another request under the same key");
    let status = tonic::Status::from(ApiError::from(reused));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_retry_the_first_attempt_would_now_refuse_returns_the_first_result() {
    // Adding 6 of a limit of 10 twice would go over: the retry must not be decided again
    // on the state its first attempt made, but answered with that first result.
    let (counter, _store, _dir) = executor().await;
    let id = Uuid::now_v7();
    let add = Add {
        amount: 6,
        limit: 10,
    };
    let key = |hash| Idempotency::key("test/add/r-2").with_request_hash(vec![hash]);
    let first = counter
        .execute(id, None, &context(), add, key(1))
        .await
        .expect("first");
    let retry = counter
        .execute(id, None, &context(), add, key(1))
        .await
        .expect("a retry is not refused");
    assert!(first.appended && !retry.appended);
    assert_eq!((retry.state.value, retry.version), (6, 1));
    let reused = counter
        .execute(id, None, &context(), add, key(2))
        .await
        .expect_err("another request under the same key");
    assert_eq!(
        tonic::Status::from(ApiError::from(reused)).code(),
        tonic::Code::InvalidArgument
    );
    // Without a key the same command is decided, and refused.
    let refused = counter
        .execute(id, None, &context(), add, Idempotency::none())
        .await
        .expect_err("over the limit");
    assert!(matches!(refused, ExecuteError::Domain(OverLimit(10))));
}

#[tokio::test]
async fn concurrent_commands_on_one_stream_all_land_by_retrying_their_races() {
    let (counter, _store, _dir) = executor().await;
    let id = Uuid::now_v7();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move {
                counter
                    .execute(
                        id,
                        None,
                        &context(),
                        Add {
                            amount: 1,
                            limit: 100,
                        },
                        Idempotency::none(),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("each command lands");
    }
    let (state, version) = counter.load(id).await.expect("load");
    assert_eq!((state.value, version), (4, 4));
}

#[tokio::test]
async fn a_repeated_key_under_a_fresh_id_returns_the_aggregate_the_first_call_created() {
    // A command that creates its aggregate picks a fresh id on every call (opening a case);
    // its retry must get what the first call created, not an empty fresh stream.
    let (counter, _store, _dir) = executor().await;
    let add = Add {
        amount: 7,
        limit: 100,
    };
    let key = || Idempotency::key("test/create/r-1").with_request_hash(vec![1]);
    let first = counter
        .execute(Uuid::now_v7(), None, &context(), add, key())
        .await
        .expect("first");
    let again = counter
        .execute(Uuid::now_v7(), None, &context(), add, key())
        .await
        .expect("again");
    assert!(first.appended && !again.appended);
    assert_eq!((again.state.value, again.version), (7, 1));
}

#[tokio::test]
async fn the_state_a_command_returns_is_the_state_its_stream_loads() {
    // The executor applies what it appended instead of reading the stream back: the two must
    // agree, envelope included.
    let (counter, _store, _dir) = executor().await;
    let id = Uuid::now_v7();
    for amount in [1, 2, 3] {
        let executed = counter
            .execute(
                id,
                None,
                &context(),
                Add { amount, limit: 100 },
                Idempotency::none(),
            )
            .await
            .expect("executed");
        let loaded = counter.load(id).await.expect("load");
        assert_eq!((executed.state, executed.version), loaded);
    }
}

#[tokio::test]
async fn a_retry_after_later_commands_returns_the_first_result_not_the_current_state() {
    let (counter, _store, _dir) = executor().await;
    let id = Uuid::now_v7();
    let add = |amount| Add { amount, limit: 100 };
    let key = || Idempotency::key("test/add/first").with_request_hash(vec![1]);
    let first = counter
        .execute(id, None, &context(), add(2), key())
        .await
        .expect("first");
    counter
        .execute(id, None, &context(), add(5), Idempotency::none())
        .await
        .expect("a later command");
    let retry = counter
        .execute(id, None, &context(), add(2), key())
        .await
        .expect("retry");
    assert!(!retry.appended);
    assert_eq!(
        (retry.state.value, retry.version),
        (first.state.value, first.version),
        "as the first call left it"
    );
}
