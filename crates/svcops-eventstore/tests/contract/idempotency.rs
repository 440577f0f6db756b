//! Idempotency keys: the first append wins, a later one gets its result, a different
//! request under the same key is refused.

use super::*;

pub async fn idempotency_key_returns_first_result(store: Store) {
    let stream_id = stream("case");
    let key = format!("request-{}", Uuid::new_v4());
    let first = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(2)).idempotency_key(&key),
    )
    .await
    .expect("first append with a key");
    let expected = Appended {
        stream_id: stream_id.clone(),
        first_version: 1,
        last_version: 2,
    };
    assert_eq!(first, AppendOutcome::Appended(expected.clone()));
    assert_eq!(
        store
            .idempotent_result(&key)
            .await
            .expect("look up the key"),
        Some(expected.clone())
    );
    assert_eq!(
        store
            .idempotent_result("request-never-used")
            .await
            .expect("look up an unknown key"),
        None
    );

    // The same request again, the same key with another expected version (stale, right
    // and ahead), and the same key on another stream: all return the first result.
    let other_stream = stream("case");
    let retries = vec![
        Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(2)),
        Append::new(stream_id.clone(), ExpectedVersion::Exact(1), events(1)),
        Append::new(stream_id.clone(), ExpectedVersion::Exact(2), events(1)),
        Append::new(stream_id.clone(), ExpectedVersion::Exact(7), events(1)),
        Append::new(stream_id.clone(), ExpectedVersion::Any, events(3)),
        Append::new(other_stream.clone(), ExpectedVersion::NoStream, events(1)),
        Append::new(other_stream.clone(), ExpectedVersion::Any, events(1)).local_only(),
    ];
    for retry in retries {
        let description = format!("{} {:?}", retry.stream_id, retry.expected);
        let outcome = append(&store, retry.idempotency_key(&key))
            .await
            .unwrap_or_else(|error| panic!("retry {description} failed: {error}"));
        assert_eq!(
            outcome,
            AppendOutcome::Duplicate(expected.clone()),
            "retry {description}"
        );
        assert!(outcome.is_duplicate());
    }
    assert_eq!(versions(&read(&store, &stream_id).await), vec![1, 2]);
    assert!(read(&store, &other_stream).await.is_empty());
    assert_eq!(all_events(&store).await.len(), 2);
    assert_eq!(store.unpublished(100).await.expect("unpublished").len(), 2);

    // Another key appends normally.
    let outcome = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::Exact(2), events(1))
            .idempotency_key(format!("request-{}", Uuid::new_v4())),
    )
    .await
    .expect("append with a fresh key");
    assert!(!outcome.is_duplicate());
    assert_eq!(outcome.appended().first_version, 3);
}

pub async fn idempotency_key_is_not_used_up_by_a_failed_append(store: Store) {
    let stream_id = stream("case");
    must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
    let key = format!("request-{}", Uuid::new_v4());
    // Rejected appends (version ahead, stale, NoStream on an existing stream) must not
    // record the key: the command was not carried out, and its corrected retry must run.
    for expected in [
        ExpectedVersion::Exact(3),
        ExpectedVersion::Exact(5),
        ExpectedVersion::NoStream,
    ] {
        let result = append(
            &store,
            Append::new(stream_id.clone(), expected, events(1)).idempotency_key(&key),
        )
        .await;
        assert_concurrency(result);
    }
    let missing = stream("case");
    let result = append(
        &store,
        Append::new(missing.clone(), ExpectedVersion::Exact(2), events(1)).idempotency_key(&key),
    )
    .await;
    assert_concurrency(result);
    assert_eq!(
        store
            .idempotent_result(&key)
            .await
            .expect("look up the key"),
        None,
        "a rejected append must not record its key"
    );

    let outcome = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::Exact(1), events(1)).idempotency_key(&key),
    )
    .await
    .expect("the corrected retry");
    assert_eq!(
        outcome,
        AppendOutcome::Appended(Appended {
            stream_id: stream_id.clone(),
            first_version: 2,
            last_version: 2,
        })
    );
    assert_eq!(versions(&read(&store, &stream_id).await), vec![1, 2]);
    assert!(read(&store, &missing).await.is_empty());
}

pub async fn concurrent_appends_with_same_key_exactly_one_appended(store: Store) {
    for round in 0..20usize {
        let tasks = 2 + round % 7;
        let key = format!("request-{}", Uuid::new_v4());
        let shared_stream = stream("race");
        let barrier = Arc::new(Barrier::new(tasks));
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let store = store.clone();
                let barrier = barrier.clone();
                let key = key.clone();
                // Half the rounds on one stream, the others each on its own stream, with
                // a mix of expected versions.
                let (stream_id, expected) = if round % 2 == 0 {
                    let expected = if task % 2 == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Any
                    };
                    (shared_stream.clone(), expected)
                } else {
                    (stream("race"), ExpectedVersion::NoStream)
                };
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .append(
                            Append::new(stream_id, expected, events(1 + task % 2))
                                .idempotency_key(key),
                        )
                        .await
                })
            })
            .collect();
        let mut appended = Vec::new();
        let mut duplicates = Vec::new();
        for handle in handles {
            match handle.await.expect("append task panicked") {
                Ok(AppendOutcome::Appended(result)) => appended.push(result),
                Ok(AppendOutcome::Duplicate(result)) => duplicates.push(result),
                other => panic!("round {round}: unexpected result {other:?}"),
            }
        }
        assert_eq!(appended.len(), 1, "round {round}: exactly one Appended");
        assert_eq!(
            duplicates.len(),
            tasks - 1,
            "round {round}: the rest Duplicate"
        );
        assert!(
            duplicates.iter().all(|duplicate| duplicate == &appended[0]),
            "round {round}: duplicates must return the first result"
        );
        let winner = &appended[0];
        let recorded = read(&store, &winner.stream_id).await;
        let expected_versions: Vec<u64> = (winner.first_version..=winner.last_version).collect();
        assert_eq!(versions(&recorded), expected_versions, "round {round}");
    }
    // Nothing but the winners was written anywhere.
    let total: u64 = all_events(&store).await.len() as u64;
    assert!(total <= 20 * 2, "too many events written: {total}");
}

/// A command refused on the state its own first attempt made (resolving a case it already
/// resolved) asks first whether it is a retry: the first result, or the refusal of a reused
/// key, exactly as an append with the key would answer.
pub async fn a_retry_is_recognised_before_it_is_decided_again(store: Store) {
    let stream_id = stream("case");
    let key = format!("request-{}", Uuid::new_v4());
    let first = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(2))
            .idempotency_key(&key)
            .request_hash(b"resolve: replaced the board".to_vec()),
    )
    .await
    .expect("first append");
    assert_eq!(
        store
            .idempotent_retry(&key, Some(b"resolve: replaced the board"))
            .await
            .expect("the same request"),
        Some(first.appended().clone())
    );
    assert_eq!(
        store
            .idempotent_retry(&key, None)
            .await
            .expect("a request without a hash"),
        Some(first.appended().clone())
    );
    match store
        .idempotent_retry(&key, Some(b"resolve: something else"))
        .await
    {
        Err(Error::IdempotencyKeyReused { key: reused }) => assert_eq!(reused, key),
        other => panic!("expected IdempotencyKeyReused, got {other:?}"),
    }
    assert_eq!(
        store
            .idempotent_retry("request-never-used", Some(b"x"))
            .await
            .expect("an unknown key"),
        None
    );
}

pub async fn the_same_key_with_a_different_request_is_refused(store: Store) {
    let stream_id = stream("case");
    let key = format!("request-{}", Uuid::new_v4());
    let first = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
            .idempotency_key(&key)
            .request_hash(b"open case: lamp flickers".to_vec()),
    )
    .await
    .expect("first append");
    let same = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
            .idempotency_key(&key)
            .request_hash(b"open case: lamp flickers".to_vec()),
    )
    .await
    .expect("the same request again");
    assert_eq!(same, AppendOutcome::Duplicate(first.appended().clone()));
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        match append(
            &store,
            Append::new(stream_id.clone(), expected, events(1))
                .idempotency_key(&key)
                .request_hash(b"open case: door bell broken".to_vec()),
        )
        .await
        {
            Err(Error::IdempotencyKeyReused { key: reused }) => assert_eq!(reused, key),
            other => panic!("expected IdempotencyKeyReused, got {other:?}"),
        }
    }
    assert_eq!(versions(&read(&store, &stream_id).await), vec![1]);
}
