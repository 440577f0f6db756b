//! Recording timelines, on one replica at a time: whoever holds the lease `listen-in/recorder`
//! consumes every office's topic into the case timelines, sweeps what is held aside and ends
//! the sessions of replicas that are gone. A timeline's sequence is then assigned by one
//! process, and the ordering decisions (causes before effects) are made under one lock
//! ([`crate::timeline`]). On taking over, a replica restores what is held aside from the
//! durable record; on losing the lease it stops consuming and forgets it. Every replica serves
//! `WatchCase` from the shared database either way.

use std::sync::Arc;
use std::time::Duration;

use svcops_bus::{Bus, consumer, topics};
use svcops_eventstore::lease::{self, LeaseGuard, LeaseSettings};
use svcops_eventstore::projection::ReadModel;
use svcops_eventstore::read_model::ReadModels;
use tokio_util::sync::CancellationToken;

use crate::session_log::SessionLog;
use crate::timeline::{self, Timelines};

pub const LEASE: &str = "listen-in/recorder";

/// How often the recording replica looks for sessions of replicas that are gone.
const GONE_REPLICAS_EVERY: Duration = Duration::from_secs(2);

/// What the recording replica works with.
pub struct Recorder {
    pub timelines: Arc<Timelines>,
    pub bus: Arc<dyn Bus>,
    pub read_models: Arc<dyn ReadModels>,
    pub index: ReadModel,
    pub session_log: Arc<SessionLog>,
    /// Consumer groups are named `<this>.<topic>`.
    pub service: &'static str,
}

/// Records whenever this replica holds the lease, until `shutdown`.
pub async fn run(recorder: Arc<Recorder>, replica: String, shutdown: CancellationToken) {
    lease::run_while_held(
        recorder.read_models.clone(),
        LEASE.to_owned(),
        replica,
        LeaseSettings::default(),
        shutdown,
        |guard| record(recorder.clone(), guard),
    )
    .await;
}

async fn record(recorder: Arc<Recorder>, guard: LeaseGuard) {
    let stop = guard.stop.clone();
    tracing::info!(token = guard.token, "recording listen-in timelines");
    // What the previous recorder held aside, held aside again before anything is consumed.
    loop {
        match recorder.timelines.take_over_until(guard.lost.clone()).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "could not restore the events held aside; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    let handler: Arc<dyn consumer::Handler> =
        Arc::new(crate::app::AllOffices(recorder.timelines.clone()));
    let mut tasks = vec![
        tokio::spawn(timeline::sweep_until(
            recorder.timelines.clone(),
            stop.clone(),
        )),
        tokio::spawn(end_sessions_of_gone_replicas(
            recorder.clone(),
            stop.clone(),
        )),
    ];
    // One consumer per topic: an effect whose cause is on another office's topic is held
    // aside, and the topics are consumed independently, so nothing waits on a lagging one.
    for topic in topics::ALL {
        tasks.push(consumer::spawn(
            recorder.bus.clone(),
            format!("{}.{topic}", recorder.service),
            &[topic],
            handler.clone(),
            stop.clone(),
        ));
    }
    svcops_kit::service::join_all(tasks).await;
    recorder.timelines.step_down().await;
    tracing::info!("stopped recording listen-in timelines");
}

async fn end_sessions_of_gone_replicas(recorder: Arc<Recorder>, stop: CancellationToken) {
    loop {
        match recorder
            .session_log
            .end_sessions_of_gone_replicas(&recorder.index, recorder.read_models.as_ref())
            .await
        {
            Ok(_) => {}
            // Still being built after a first start.
            Err(svcops_eventstore::Error::ReadModelNotReady { .. }) => {}
            Err(error) => {
                tracing::warn!(%error, "could not look for sessions of gone replicas; retrying")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(GONE_REPLICAS_EVERY) => {}
        }
    }
}
