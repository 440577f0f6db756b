//! This replica's registration: a lease named after it (`listen-in/replica/<id>`), held for
//! as long as the process serves. Every session it starts names the hold
//! (`served_by` = `<id>#<fencing token>`); whichever replica records timelines ends the
//! sessions whose hold is not the current one (`SessionLog::end_sessions_of_gone_replicas`):
//! the replica is gone, or its registration lapsed and was taken again since. A replica whose
//! registration lapses while it runs (a database outage, a long pause) stops its sessions,
//! since another replica may already have ended them on the record, and serves none until it
//! registers again.

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

/// One hold of the registration, as a session started under it sees it.
#[derive(Debug, Clone)]
pub struct Hold {
    /// What the session's start records as `served_by`.
    pub served_by: String,
    /// Cancelled when this hold lapses.
    pub lapsed: CancellationToken,
}

/// `served_by` for the hold of `replica` under `token`.
pub fn served_by(replica: &str, token: i64) -> String {
    format!("{replica}#{token}")
}

/// The replica and fencing token a `served_by` names; `None` for sessions from before
/// replicas (empty) or anything else.
pub fn parse_served_by(served_by: &str) -> Option<(&str, i64)> {
    let (replica, token) = served_by.rsplit_once('#')?;
    Some((replica, token.parse().ok()?))
}

/// This replica's registration, as sessions see it.
#[derive(Clone)]
pub struct Registration {
    id: Arc<str>,
    /// While registered: the current hold.
    current: watch::Receiver<Option<Hold>>,
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
        let holder_id = id.clone();
        let task = tokio::spawn(async move {
            lease::run_while_held(
                read_models,
                name,
                holder,
                LeaseSettings::default(),
                shutdown,
                |guard| {
                    let sender = sender.clone();
                    let served_by = served_by(&holder_id, guard.token);
                    async move {
                        sender.send_replace(Some(Hold {
                            served_by,
                            lapsed: guard.lost.clone(),
                        }));
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

    /// The current hold, once registered (waiting at most `bound`).
    pub async fn registered(&self, bound: Duration) -> Option<Hold> {
        let mut current = self.current.clone();
        let waited = tokio::time::timeout(
            bound,
            current.wait_for(|hold| {
                hold.as_ref()
                    .is_some_and(|hold| !hold.lapsed.is_cancelled())
            }),
        )
        .await;
        match waited {
            Ok(Ok(hold)) => hold.clone(),
            _ => None,
        }
    }
}
