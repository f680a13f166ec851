//! What has changed in each community, as the issues and logistics feeds
//! tell it. A community's dashboard, once assembled whole, is followed here
//! (`WatchIssues` and `WatchLogistics` from now on, as the gateway itself),
//! and every event counted; while both feeds are open and count nothing new,
//! its held dashboard is still current, and is served without reading its
//! thirteen parts again (see `cache.rs`).
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tonic::Status;

use linli_core::auth::Keys;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::logistics::v1 as lpb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;

use crate::backend::Backend;

/// Communities followed at most; past this, dashboards are held by age alone.
const MOST_FOLLOWED: usize = 4096;
/// The feeds followed per community.
const FEEDS: usize = 2;
/// How long a feed stays closed after it told of a change (or broke, or
/// could not be opened) before it is opened again from now; meanwhile the
/// community's dashboards are held by age alone.
const REOPEN: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Community {
    /// Events heard, and feeds (re)opened: any rise may be a change.
    changes: AtomicU64,
    /// Feeds open now.
    open: AtomicUsize,
}

pub struct Changes {
    issues: Backend,
    logistics: Backend,
    keys: Keys,
    followed: Mutex<HashMap<String, Arc<Community>>>,
    /// Dropped with the gateway, which ends every follower.
    stop: tokio::sync::watch::Sender<()>,
}

impl Changes {
    pub fn new(issues: Backend, logistics: Backend, keys: Keys) -> Changes {
        Changes {
            issues,
            logistics,
            keys,
            followed: Mutex::default(),
            stop: tokio::sync::watch::channel(()).0,
        }
    }

    /// How many changes `community` has had while both its feeds are open;
    /// `None` when they are not (not followed, or a feed is broken), so
    /// nothing can be known to be unchanged.
    pub fn of(&self, community: &str) -> Option<u64> {
        let c = self
            .followed
            .lock()
            .expect("the changes' lock")
            .get(community)?
            .clone();
        // The feeds before the count: a feed that broke and opened again in
        // between has counted its opening, so the count cannot be one that
        // missed the events of its break.
        let open = c.open.load(Ordering::Acquire) == FEEDS;
        open.then(|| c.changes.load(Ordering::Acquire))
    }

    /// Starts following `community`'s feeds, unless they already are.
    pub fn follow(&self, community: &str) {
        let mut followed = self.followed.lock().expect("the changes' lock");
        if followed.contains_key(community) || followed.len() >= MOST_FOLLOWED {
            return;
        }
        let c = Arc::new(Community::default());
        followed.insert(community.to_owned(), c.clone());

        let (backend, keys, id) = (self.issues.clone(), self.keys.clone(), community.to_owned());
        tokio::spawn(follow(c.clone(), self.stop.subscribe(), move || {
            let mut client = IssuesServiceClient::new(backend.clone());
            let req = keys
                .service_actor("gateway")
                .request(ipb::WatchIssuesRequest {
                    community_id: id.clone(),
                    after_seq: 0,
                    from_now: true,
                });
            async move {
                let events = client.watch_issues(req).await?.into_inner();
                Ok(events.map(|e| e.map(|e| e.event.map_or(0, |e| e.seq))))
            }
        }));
        let (backend, keys, id) = (
            self.logistics.clone(),
            self.keys.clone(),
            community.to_owned(),
        );
        tokio::spawn(follow(c, self.stop.subscribe(), move || {
            let mut client = LogisticsServiceClient::new(backend.clone());
            let req = keys
                .service_actor("gateway")
                .request(lpb::WatchLogisticsRequest {
                    community_id: id.clone(),
                    after_seq: 0,
                    from_now: true,
                });
            async move {
                let events = client.watch_logistics(req).await?.into_inner();
                Ok(events.map(|e| e.map(|e| e.event.map_or(0, |e| e.seq))))
            }
        }));
    }
}

/// Follows one feed of one community: `open()` opens it from now on. The
/// first event heard counts as a change, and the feed is then closed for
/// `REOPEN` and opened again from now (which counts as a change too):
/// whatever else happens meanwhile is covered by that, so a busy community
/// or a bulk import is never read event by event. The feed counts as open
/// only while its stream is.
async fn follow<F, Fut, S>(
    community: Arc<Community>,
    mut stop: tokio::sync::watch::Receiver<()>,
    open: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, Status>>,
    S: Stream<Item = Result<i64, Status>> + Unpin,
{
    loop {
        let opened = tokio::select! {
            opened = open() => opened,
            _ = stop.changed() => return,
        };
        match opened {
            Ok(mut events) => {
                // Counted before it is open: whoever sees it open sees a
                // count newer than anything it may have missed while shut.
                community.changes.fetch_add(1, Ordering::AcqRel);
                community.open.fetch_add(1, Ordering::AcqRel);
                let next = tokio::select! {
                    next = events.next() => next,
                    _ = stop.changed() => return,
                };
                community.open.fetch_sub(1, Ordering::AcqRel);
                community.changes.fetch_add(1, Ordering::AcqRel);
                if let Some(Err(e)) = next {
                    tracing::debug!(error = %e.message(), "a followed feed broke");
                }
            }
            Err(e) => tracing::debug!(error = %e.message(), "a feed could not be followed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REOPEN) => {}
            _ = stop.changed() => return,
        }
    }
}
