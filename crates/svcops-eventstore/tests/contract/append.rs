//! Appends: expected versions, concurrency, bad input, retries that find their own events.

use super::*;

pub async fn append_to_new_stream_round_trips_everything(store: Store) {
    let stream_id = stream("case");
    let mut odd_offset = full_event(3);
    // Offsets may have seconds (historical zones): the instant must still round-trip.
    odd_offset.metadata.occurred_at = odd_offset
        .metadata
        .occurred_at
        .to_offset(UtcOffset::from_hms(-3, -25, -52).expect("valid offset"));
    let new_events = vec![full_event(1), bare_event(2), odd_offset];
    let before = OffsetDateTime::now_utc() - time::Duration::minutes(1);

    let outcome = append(
        &store,
        Append::new(
            stream_id.clone(),
            ExpectedVersion::NoStream,
            new_events.clone(),
        ),
    )
    .await
    .expect("append to a new stream");
    assert_eq!(
        outcome,
        AppendOutcome::Appended(Appended {
            stream_id: stream_id.clone(),
            first_version: 1,
            last_version: 3,
        })
    );

    let after = OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let recorded = read(&store, &stream_id).await;
    assert_eq!(versions(&recorded), vec![1, 2, 3]);
    assert_strictly_increasing(&positions(&recorded));
    for (stored, sent) in recorded.iter().zip(&new_events) {
        assert!(stored.position > 0);
        assert_eq!(stored.stream_id, stream_id);
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.payload, sent.payload);
        // EventMetadata's equality compares occurred_at as an instant, to the nanosecond;
        // the test timestamps have no digits below microseconds.
        assert_eq!(stored.metadata, sent.metadata);
        assert_eq!(
            stored.metadata.occurred_at.unix_timestamp_nanos(),
            sent.metadata.occurred_at.unix_timestamp_nanos()
        );
        assert!(
            stored.recorded_at > before && stored.recorded_at < after,
            "recorded_at {} not around now",
            stored.recorded_at
        );
    }

    // An unknown stream reads as empty.
    assert!(read(&store, &stream("case")).await.is_empty());
}

pub async fn empty_payload_round_trips(store: Store) {
    // A protobuf message with only default fields encodes to zero bytes.
    let stream_id = stream("case");
    let mut event = bare_event(0);
    event.payload = Vec::new();
    append(
        &store,
        Append::new(
            stream_id.clone(),
            ExpectedVersion::NoStream,
            vec![event.clone()],
        ),
    )
    .await
    .expect("append an event with an empty payload");
    let recorded = read(&store, &stream_id).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].payload, Vec::<u8>::new());
    assert_eq!(recorded[0].event_id, event.event_id);
}

pub async fn timestamps_keep_at_least_microseconds(store: Store) {
    let stream_id = stream("case");
    let mut event = bare_event(0);
    let base = now_micros();
    event.metadata.occurred_at = base
        .replace_nanosecond(base.nanosecond() + 789)
        .expect("valid nanosecond");
    append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::NoStream, vec![event]),
    )
    .await
    .expect("append");
    let recorded = read(&store, &stream_id).await;
    let stored = recorded[0].metadata.occurred_at;
    // PostgreSQL keeps microseconds, SQLite more: both agree to the microsecond.
    assert_eq!(
        stored.unix_timestamp_nanos() / 1_000,
        base.unix_timestamp_nanos() / 1_000
    );
}

pub async fn read_stream_from_version_with_limit(store: Store) {
    let stream_id = stream("case");
    must_append(&store, &stream_id, ExpectedVersion::NoStream, 5).await;
    must_append(&store, &stream("other"), ExpectedVersion::NoStream, 2).await;
    let page = store
        .read_stream(&stream_id, 2, 3)
        .await
        .expect("read a page");
    assert_eq!(versions(&page), vec![2, 3, 4]);
    let rest = store
        .read_stream(&stream_id, 5, 10)
        .await
        .expect("read the rest");
    assert_eq!(versions(&rest), vec![5]);
    for from in [6, u64::MAX] {
        let beyond = store
            .read_stream(&stream_id, from, 10)
            .await
            .expect("read beyond the end");
        assert!(beyond.is_empty(), "from version {from}");
    }
    let none = store
        .read_stream(&stream_id, 1, 0)
        .await
        .expect("read zero events");
    assert!(none.is_empty());
    let unbounded = store
        .read_stream(&stream_id, 1, usize::MAX)
        .await
        .expect("read with an unbounded limit");
    assert_eq!(versions(&unbounded), vec![1, 2, 3, 4, 5]);
}

pub async fn no_stream_on_existing_stream_conflicts(store: Store) {
    let stream_id = stream("case");
    must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
    for count in [1, 2] {
        let result = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(count)),
        )
        .await;
        assert_concurrency(result);
        let result = append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(count)).local_only(),
        )
        .await;
        assert_concurrency(result);
    }
    assert_eq!(versions(&read(&store, &stream_id).await), vec![1]);
}

pub async fn exact_version_appends(store: Store) {
    let stream_id = stream("case");
    must_append(&store, &stream_id, ExpectedVersion::NoStream, 2).await;
    let outcome = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::Exact(2), events(3)),
    )
    .await
    .expect("append at the right version");
    assert_eq!(
        outcome,
        AppendOutcome::Appended(Appended {
            stream_id: stream_id.clone(),
            first_version: 3,
            last_version: 5,
        })
    );
    must_append(&store, &stream_id, ExpectedVersion::Exact(5), 1).await;
    assert_eq!(
        versions(&read(&store, &stream_id).await),
        vec![1, 2, 3, 4, 5, 6]
    );
}

pub async fn exact_stale_version_conflicts(store: Store) {
    let stream_id = stream("case");
    must_append(&store, &stream_id, ExpectedVersion::NoStream, 3).await;
    for stale in 1..=2 {
        for count in [1, 3] {
            let result = append(
                &store,
                Append::new(
                    stream_id.clone(),
                    ExpectedVersion::Exact(stale),
                    events(count),
                ),
            )
            .await;
            assert_concurrency(result);
        }
    }
    let recorded = read(&store, &stream_id).await;
    assert_eq!(versions(&recorded), vec![1, 2, 3]);
}

pub async fn exact_version_ahead_conflicts_without_gap(store: Store) {
    let stream_id = stream("case");
    must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
    // Single-event and multi-event appends (they may take different paths).
    for ahead in [2, 3, 100, i64::MAX as u64, u64::MAX] {
        for count in [1, 2] {
            let result = append(
                &store,
                Append::new(
                    stream_id.clone(),
                    ExpectedVersion::Exact(ahead),
                    events(count),
                ),
            )
            .await;
            assert_concurrency(result);
        }
    }
    // On a stream that does not exist at all.
    let missing = stream("case");
    let result = append(
        &store,
        Append::new(missing.clone(), ExpectedVersion::Exact(1), events(1)),
    )
    .await;
    assert_concurrency(result);
    assert!(read(&store, &missing).await.is_empty());
    assert_eq!(versions(&read(&store, &stream_id).await), vec![1]);
    assert_eq!(all_events(&store).await.len(), 1);
}

pub async fn any_appends_after_whatever_is_there(store: Store) {
    let stream_id = stream("case");
    let outcome = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::Any, events(2)),
    )
    .await
    .expect("Any on a new stream");
    assert_eq!(
        (
            outcome.appended().first_version,
            outcome.appended().last_version
        ),
        (1, 2)
    );
    let outcome = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::Any, events(1)),
    )
    .await
    .expect("Any on an existing stream");
    assert_eq!(
        (
            outcome.appended().first_version,
            outcome.appended().last_version
        ),
        (3, 3)
    );
    assert_eq!(versions(&read(&store, &stream_id).await), vec![1, 2, 3]);
}

pub async fn multi_event_append_is_atomic(store: Store) {
    let stream_id = stream("case");
    must_append(&store, &stream_id, ExpectedVersion::NoStream, 2).await;
    // Would write versions 2..=5: version 2 exists, so nothing at all may land.
    let batch = events(4);
    let result = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::Exact(1), batch.clone()),
    )
    .await;
    assert_concurrency(result);
    let recorded = read(&store, &stream_id).await;
    assert_eq!(versions(&recorded), vec![1, 2]);
    let all = all_events(&store).await;
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .all(|event| batch.iter().all(|new| new.event_id != event.event_id))
    );
    assert_eq!(store.unpublished(100).await.expect("unpublished").len(), 2);

    // And a good batch lands whole, in order.
    let batch = events(4);
    let outcome = append(
        &store,
        Append::new(stream_id.clone(), ExpectedVersion::Exact(2), batch.clone()),
    )
    .await
    .expect("a good batch");
    assert_eq!(
        (
            outcome.appended().first_version,
            outcome.appended().last_version
        ),
        (3, 6)
    );
    let recorded = read(&store, &stream_id).await;
    assert_eq!(versions(&recorded), vec![1, 2, 3, 4, 5, 6]);
    let batch_ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
    assert_eq!(event_ids(&recorded)[2..], batch_ids);
    assert_strictly_increasing(&positions(&recorded));
}

pub async fn concurrent_appends_at_same_version_exactly_one_wins(store: Store) {
    for round in 0..20usize {
        let tasks = 2 + round % 7;
        let stream_id = stream("race");
        // Even rounds race on a new stream (NoStream), odd ones on an existing one.
        let expected = if round % 2 == 0 {
            ExpectedVersion::NoStream
        } else {
            must_append(&store, &stream_id, ExpectedVersion::NoStream, 1).await;
            ExpectedVersion::Exact(1)
        };
        let base = if round % 2 == 0 { 0 } else { 1 };
        let barrier = Arc::new(Barrier::new(tasks));
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let store = store.clone();
                let stream_id = stream_id.clone();
                let barrier = barrier.clone();
                // Different batch sizes, so a winner is recognisable by its length.
                let batch = events(1 + task % 3);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
                    let result = store.append(Append::new(stream_id, expected, batch)).await;
                    (ids, result)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for handle in handles {
            let (ids, result) = handle.await.expect("append task panicked");
            match result {
                Ok(AppendOutcome::Appended(appended)) => winners.push((ids, appended)),
                Err(Error::Concurrency { .. }) => {}
                other => panic!("round {round}: unexpected result {other:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round} with {tasks} tasks: exactly one append must win"
        );
        let (winner_ids, appended) = &winners[0];
        assert_eq!(appended.first_version, base + 1);
        assert_eq!(appended.last_version, base + winner_ids.len() as u64);
        let recorded = read(&store, &stream_id).await;
        let expected_versions: Vec<u64> = (1..=base + winner_ids.len() as u64).collect();
        assert_eq!(versions(&recorded), expected_versions, "round {round}");
        assert_eq!(
            &event_ids(&recorded)[base as usize..],
            winner_ids.as_slice()
        );
    }
}

pub async fn concurrent_any_appends_all_land_without_gaps(store: Store) {
    let stream_id = stream("race");
    let tasks = 8;
    let barrier = Arc::new(Barrier::new(tasks));
    // Batches of one and of two events (they may take different paths).
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let store = store.clone();
            let stream_id = stream_id.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(Append::new(
                        stream_id,
                        ExpectedVersion::Any,
                        events(1 + task % 2),
                    ))
                    .await
            })
        })
        .collect();
    let mut ranges = Vec::new();
    for handle in handles {
        let outcome = handle
            .await
            .expect("append task panicked")
            .expect("an Any append lands despite the race");
        ranges.push((
            outcome.appended().first_version,
            outcome.appended().last_version,
        ));
    }
    // The ranges tile 1..=total without overlap or gap.
    ranges.sort_unstable();
    let total: u64 = (0..tasks as u64).map(|task| 1 + task % 2).sum();
    let mut next = 1;
    for (first, last) in &ranges {
        assert_eq!(*first, next, "ranges {ranges:?}");
        assert!(last >= first);
        next = last + 1;
    }
    assert_eq!(next, total + 1, "ranges {ranges:?}");
    let recorded = read(&store, &stream_id).await;
    assert_eq!(versions(&recorded), (1..=total).collect::<Vec<_>>());
}

pub async fn bad_input_is_invalid(store: Store) {
    let stream_id = stream("case");
    assert_invalid(
        append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, Vec::new()),
        )
        .await,
    );
    assert_invalid(
        append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Exact(0), events(1)),
        )
        .await,
    );
    assert_invalid(
        append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                .idempotency_key(""),
        )
        .await,
    );
    assert_invalid(
        append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                .idempotency_key("k".repeat(301)),
        )
        .await,
    );
    // Text the adapters would store differently (PostgreSQL refuses NUL, SQLite keeps it)
    // is refused alike, before it reaches either.
    assert_invalid(
        append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1))
                .idempotency_key("request\0one"),
        )
        .await,
    );
    for corrupt in [
        |event: &mut NewEvent| event.metadata.actor_subject = "alice\0".into(),
        |event: &mut NewEvent| event.metadata.actor_role = "agent\n".into(),
        |event: &mut NewEvent| event.metadata.traceparent = Some("00-\0".into()),
        |event: &mut NewEvent| event.event_type = "svcops.\0".into(),
    ] {
        let mut event = bare_event(1);
        corrupt(&mut event);
        assert_invalid(
            append(
                &store,
                Append::new(stream_id.clone(), ExpectedVersion::NoStream, vec![event]),
            )
            .await,
        );
    }
    for bad in ["", "Case-1", "case 1", "case/1", "case-é", &"x".repeat(201)] {
        assert_invalid(StreamId::parse(bad));
    }
    assert!(StreamId::parse("case-0190abcd_x").is_ok());
    assert!(StreamId::parse("x".repeat(200)).is_ok());
    // Nothing was written by the rejected appends.
    assert!(read(&store, &stream_id).await.is_empty());
    assert!(all_events(&store).await.is_empty());
}

pub async fn ping_succeeds(store: Store) {
    store.ping().await.expect("ping");
}

/// An append whose commit went through but whose answer was lost is retried with the
/// same events (the same ids): the retry reports where they are, whatever the caller
/// expected, and writes nothing twice.
pub async fn an_append_retried_after_it_committed_finds_its_own_events(store: Store) {
    let stream_id = stream("case");
    for (expected, count) in [
        (ExpectedVersion::NoStream, 1),
        (ExpectedVersion::Exact(1), 1),
        (ExpectedVersion::Exact(2), 3),
        (ExpectedVersion::Any, 1),
        (ExpectedVersion::Any, 2),
    ] {
        let request = Append::new(stream_id.clone(), expected, events(count));
        let first = append(&store, request.clone())
            .await
            .unwrap_or_else(|error| panic!("first attempt {expected:?}: {error}"));
        let retry = append(&store, request)
            .await
            .unwrap_or_else(|error| panic!("retry {expected:?}: {error}"));
        assert_eq!(
            retry, first,
            "the retry of {expected:?} reports the first write"
        );
    }
    let recorded = read(&store, &stream_id).await;
    assert_eq!(versions(&recorded), (1..=8).collect::<Vec<u64>>());
    assert_eq!(store.unpublished(100).await.expect("unpublished").len(), 8);

    // Another event at a taken version is still refused: only one's own events count.
    assert_concurrency(
        append(
            &store,
            Append::new(stream_id.clone(), ExpectedVersion::Exact(1), events(1)),
        )
        .await,
    );
}

/// Concurrent single-event retries (the PostgreSQL adapter writes them in groups) each
/// find their own event.
pub async fn retries_racing_in_a_burst_find_their_own_events(store: Store) {
    let requests: Vec<Append> = (0..64)
        .map(|n| {
            let expected = if n % 2 == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Any
            };
            Append::new(stream("case"), expected, events(1))
        })
        .collect();
    let burst = |requests: Vec<Append>| {
        let store = store.clone();
        async move {
            let tasks: Vec<_> = requests
                .into_iter()
                .map(|request| {
                    let store = store.clone();
                    tokio::spawn(async move { store.append(request).await })
                })
                .collect();
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.expect("task").expect("append"));
            }
            outcomes
        }
    };
    let first = burst(requests.clone()).await;
    let retried = burst(requests.clone()).await;
    assert_eq!(retried, first);
    assert_eq!(all_events(&store).await.len(), requests.len());
}

pub async fn appends_together_land_in_order_and_a_refused_one_leaves_no_trace(store: Store) {
    let taken = stream("case");
    must_append(&store, &taken, ExpectedVersion::NoStream, 1).await;
    let (first, second) = (stream("case"), stream("case"));
    let refused = events(2);
    let outcomes = store
        .append_all(vec![
            Append::new(first.clone(), ExpectedVersion::NoStream, events(1)),
            // Version 1 exists: refused, and nothing of it may land.
            Append::new(taken.clone(), ExpectedVersion::NoStream, refused.clone()),
            Append::new(second.clone(), ExpectedVersion::NoStream, events(2))
                .idempotency_key("together-1"),
            // The same key again, in the same call: the first one's result.
            Append::new(second.clone(), ExpectedVersion::Exact(2), events(1))
                .idempotency_key("together-1"),
            // Any version after what this very call appended before it.
            Append::new(first.clone(), ExpectedVersion::Any, events(1)),
            // Invalid input is refused on its own.
            Append::new(second.clone(), ExpectedVersion::Any, Vec::new()),
        ])
        .await;
    assert_eq!(outcomes.len(), 6);
    let appended = |outcome: &Result<AppendOutcome, Error>| match outcome {
        Ok(AppendOutcome::Appended(appended)) => (appended.first_version, appended.last_version),
        other => panic!("expected appended, got {other:?}"),
    };
    assert_eq!(appended(&outcomes[0]), (1, 1));
    assert!(
        matches!(&outcomes[1], Err(Error::Concurrency { .. })),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(appended(&outcomes[2]), (1, 2));
    assert!(
        matches!(&outcomes[3], Ok(AppendOutcome::Duplicate(duplicate)) if duplicate.first_version == 1),
        "{:?}",
        outcomes[3]
    );
    assert_eq!(appended(&outcomes[4]), (2, 2));
    assert!(
        matches!(&outcomes[5], Err(Error::Invalid(_))),
        "{:?}",
        outcomes[5]
    );
    assert_eq!(versions(&read(&store, &first).await), vec![1, 2]);
    assert_eq!(versions(&read(&store, &second).await), vec![1, 2]);
    assert_eq!(versions(&read(&store, &taken).await), vec![1]);
    let all = all_events(&store).await;
    assert!(
        all.iter()
            .all(|event| refused.iter().all(|new| new.event_id != event.event_id)),
        "nothing of the refused append landed"
    );
    // Positions follow the order of the call.
    let first_events = read(&store, &first).await;
    let second_events = read(&store, &second).await;
    assert!(first_events[0].position < second_events[0].position);
    assert!(second_events[1].position < first_events[1].position);
}
