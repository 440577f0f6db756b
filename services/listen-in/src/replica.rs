//! This replica's registration: a lease named after it (`listen-in/replica/<id>`), held for
//! as long as the process serves. Every session it starts names it (`served_by`); whichever
//! replica records timelines ends the sessions of replicas whose registration has lapsed
//! (`SessionLog::end_sessions_of_gone_replicas`). A replica whose registration lapses while
//! it runs (a database outage, a long pause) stops its sessions, since another replica may
//! already have ended them on the record, and serves none until it registers again.

use std::sync::Arc;
use std::time::Duration;

use svcops_eventstore::lease::{self, LeaseSettings};
use svcops_eventstore::read_model::ReadModels;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Registrations are leases named this, then the replica's id.
pub const LEASE_PREFIX: &str = "listen-in/replica/";

/// How long a lapsed registration's row is kept before it is deleted.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

pub fn lease_name(replica: &str) -> String {
    format!("{LEASE_PREFIX}{replica}")
}

/// This replica's registration, as sessions see it.
#[derive(Clone)]
pub struct Registration {
    id: Arc<str>,
    /// While registered: a token cancelled when the registration lapses.
    current: watch::Receiver<Option<CancellationToken>>,
}

impl Registration {
    /// Registers `id` and keeps it registered until `shutdown` (cancel it only once this
    /// replica's sessions have recorded their ends).
    pub fn spawn(
        read_models: Arc<dyn ReadModels>,
        id: String,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (sender, current) = watch::channel(None);
        let name = lease_name(&id);
        let holder = id.clone();
        let task = tokio::spawn(async move {
            lease::run_while_held(
                read_models,
                name,
                holder,
                LeaseSettings::default(),
                shutdown,
                |guard| {
                    let sender = sender.clone();
                    async move {
                        sender.send_replace(Some(guard.lost.clone()));
                        guard.stop.cancelled().await;
                        sender.send_replace(None);
                    }
                },
            )
            .await;
        });
        (
            Self {
                id: id.into(),
                current,
            },
            task,
        )
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Once registered (waiting at most `bound`): a token cancelled if the registration lapses.
    pub async fn registered(&self, bound: Duration) -> Option<CancellationToken> {
        let mut current = self.current.clone();
        let waited = tokio::time::timeout(
            bound,
            current.wait_for(|token| token.as_ref().is_some_and(|token| !token.is_cancelled())),
        )
        .await;
        match waited {
            Ok(Ok(token)) => token.clone(),
            _ => None,
        }
    }
}
