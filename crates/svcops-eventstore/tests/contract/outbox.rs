//! Reading back: the whole log in position order, the outbox the relay drains, checkpoints.

use super::*;

/// Hundreds of concurrent one-event appends (the PostgreSQL adapter commits them in
/// groups): each independent append lands, exactly one of those racing for the same
/// stream does, and only published ones reach the outbox.
pub async fn a_burst_of_single_appends_each_lands_once_with_its_outbox_row(store: Store) {
    const INDEPENDENT: usize = 300;
    const RACERS: usize = 40;
    let contested = stream("contested");
    let mut tasks = Vec::new();
    for index in 0..INDEPENDENT + RACERS {
        let store = store.clone();
        let contested = contested.clone();
        tasks.push(tokio::spawn(async move {
            let (stream_id, publish) = if index < INDEPENDENT {
                (stream("burst"), index % 3 != 0)
            } else {
                (contested, true)
            };
            let mut request = Append::new(stream_id.clone(), ExpectedVersion::NoStream, events(1));
            if !publish {
                request = request.local_only();
            }
            (index, stream_id, publish, store.append(request).await)
        }));
    }
    let mut contested_wins = 0;
    let mut published_streams = std::collections::HashSet::new();
    for task in tasks {
        let (index, stream_id, publish, result) = task.await.expect("task");
        if index < INDEPENDENT {
            let outcome = result.expect("an independent append lands");
            assert_eq!(outcome.appended().first_version, 1);
            if publish {
                published_streams.insert(stream_id.to_string());
            }
        } else {
            match result {
                Ok(_) => contested_wins += 1,
                Err(Error::Concurrency { .. }) => {}
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
    }
    assert_eq!(
        contested_wins, 1,
        "exactly one racer wins the contested stream"
    );
    assert_eq!(versions(&read(&store, &contested).await), [1]);
    let unpublished = store.unpublished(10_000).await.expect("unpublished");
    let outbox_streams: std::collections::HashSet<String> = unpublished
        .iter()
        .map(|event| event.stream_id.to_string())
        .filter(|stream_id| stream_id.starts_with("burst-"))
        .collect();
    assert_eq!(
        outbox_streams, published_streams,
        "published appends, and only those, are in the outbox"
    );
    let positions: std::collections::HashSet<_> =
        unpublished.iter().map(|event| event.position).collect();
    assert_eq!(positions.len(), unpublished.len(), "positions are unique");
}

pub async fn read_all_in_position_order_with_limit(store: Store) {
    assert!(all_events(&store).await.is_empty());
    let mut appended_ids = Vec::new();
    for index in 0..5 {
        let stream_id = stream("log");
        let batch = events(1 + index % 2);
        appended_ids.extend(batch.iter().map(|event| event.event_id));
        let mut append_request = Append::new(stream_id, ExpectedVersion::NoStream, batch);
        if index == 3 {
            // read_all covers local-only appends too.
            append_request = append_request.local_only();
        }
        append(&store, append_request)
            .await
            .expect("append to the log");
    }
    let all = all_events(&store).await;
    assert_eq!(
        event_ids(&all),
        appended_ids,
        "append order is position order"
    );
    let all_positions = positions(&all);
    assert_strictly_increasing(&all_positions);

    let page = store.read_all(0, 3).await.expect("first page");
    assert_eq!(positions(&page), all_positions[..3]);
    let page = store
        .read_all(all_positions[1], 2)
        .await
        .expect("page after a position");
    assert_eq!(positions(&page), all_positions[2..4]);
    let rest = store
        .read_all(all_positions[5], 100)
        .await
        .expect("the tail");
    assert_eq!(positions(&rest), all_positions[6..]);
    let past_end = store
        .read_all(*all_positions.last().expect("events exist"), 100)
        .await
        .expect("past the end");
    assert!(past_end.is_empty());
    let unbounded = store.read_all(0, usize::MAX).await.expect("unbounded");
    assert_eq!(positions(&unbounded), all_positions);
}

pub async fn unpublished_returns_published_events_until_marked(store: Store) {
    assert!(store.unpublished(10).await.expect("unpublished").is_empty());
    let published_a = stream("a");
    let local = stream("local");
    let published_b = stream("b");
    must_append(&store, &published_a, ExpectedVersion::NoStream, 2).await;
    append(
        &store,
        Append::new(local.clone(), ExpectedVersion::NoStream, events(1)).local_only(),
    )
    .await
    .expect("local-only append of one event");
    append(
        &store,
        Append::new(local.clone(), ExpectedVersion::Exact(1), events(1)).local_only(),
    )
    .await
    .expect("local-only append at a version");
    must_append(&store, &published_b, ExpectedVersion::NoStream, 1).await;
    must_append(&store, &published_a, ExpectedVersion::Exact(2), 1).await;

    let pending = store.unpublished(100).await.expect("unpublished");
    assert_eq!(pending.len(), 4);
    assert_strictly_increasing(&positions(&pending));
    assert!(pending.iter().all(|event| event.stream_id != local));
    let streams: Vec<(&str, u64)> = pending
        .iter()
        .map(|event| (event.stream_id.as_str(), event.version))
        .collect();
    assert_eq!(
        streams,
        vec![
            (published_a.as_str(), 1),
            (published_a.as_str(), 2),
            (published_b.as_str(), 1),
            (published_a.as_str(), 3),
        ]
    );
    // The events come back whole.
    let from_log = all_events(&store).await;
    for event in &pending {
        assert!(
            from_log.contains(event),
            "unpublished event differs from the log"
        );
    }

    let limited = store.unpublished(2).await.expect("limited");
    assert_eq!(positions(&limited), positions(&pending)[..2]);

    store
        .mark_published(&positions(&limited))
        .await
        .expect("mark published");
    let rest = store.unpublished(100).await.expect("unpublished");
    assert_eq!(positions(&rest), positions(&pending)[2..]);

    // Marking nothing, or already-published positions, is harmless.
    store.mark_published(&[]).await.expect("mark nothing");
    store
        .mark_published(&positions(&limited))
        .await
        .expect("mark twice");
    assert_eq!(
        positions(&store.unpublished(100).await.expect("unpublished")),
        positions(&rest)
    );

    store
        .mark_published(&positions(&rest))
        .await
        .expect("mark the rest");
    assert!(
        store
            .unpublished(100)
            .await
            .expect("unpublished")
            .is_empty()
    );
    // Published events stay in the log.
    assert_eq!(all_events(&store).await.len(), 6);
}

pub async fn checkpoints_load_save_overwrite(store: Store) {
    assert_eq!(
        store.load_checkpoint("relay").await.expect("load missing"),
        None
    );
    store.save_checkpoint("relay", 42).await.expect("save");
    store
        .save_checkpoint("projector", 7)
        .await
        .expect("save another");
    assert_eq!(
        store.load_checkpoint("relay").await.expect("load"),
        Some(42)
    );
    store.save_checkpoint("relay", 43).await.expect("overwrite");
    assert_eq!(
        store.load_checkpoint("relay").await.expect("load"),
        Some(43)
    );
    store
        .save_checkpoint("relay", 10)
        .await
        .expect("overwrite backwards");
    assert_eq!(
        store.load_checkpoint("relay").await.expect("load"),
        Some(10)
    );
    assert_eq!(
        store.load_checkpoint("projector").await.expect("load"),
        Some(7)
    );
    assert_eq!(store.load_checkpoint("nobody").await.expect("load"), None);
}
