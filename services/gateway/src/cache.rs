//! Views held in memory for a moment. A county's screens poll the same
//! hundred dashboards; each is assembled once per `max_age`, not once per
//! screen.
//!
//! An answer is served as it is while it is younger than `max_age`, whole,
//! and assembled after the caller's own latest write through this gateway —
//! so whoever writes through the gateway reads the change back at once. Where
//! the caller can tell that nothing has changed since (the services' feeds
//! counted no change, see `changes.rs`), it is served for up to `quiet_for`
//! instead. One that
//! is older, or has parts missing, is still served for up to `stale_for`
//! while one fresh answer is assembled in the background. Beyond that, after
//! a write, or when nothing is held, callers wait for a fresh answer — all of
//! them for the same one. Errors are never held.
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::Status;
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// How long an answer is served without asking again; zero holds nothing.
    pub max_age: Duration,
    /// How long an answer is served without asking again while its changes
    /// are counted and none has come (never less than `max_age`); each key
    /// holds for between three quarters of this and all of it.
    pub quiet_for: Duration,
    /// How long an older answer may still be served while a fresh one is assembled.
    pub stale_for: Duration,
    /// Answers assembled at once in the background, over all keys: a burst
    /// of held answers to refresh queues here rather than swamping the
    /// services. (A caller who has to wait never queues: their assembly
    /// starts at once, as it would with nothing held.)
    pub assembling: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_age: Duration::from_secs(1),
            quiet_for: Duration::from_secs(10),
            stale_for: Duration::from_secs(30),
            assembling: 8,
        }
    }
}

/// Between three quarters of `hold` and all of it, the same for a key each
/// time: views assembled together (as at a start) are not all asked for
/// again together.
fn spread(hold: Duration, key: &str) -> Duration {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    hold.mul_f64(0.75 + 0.25 * (h % 1024) as f64 / 1024.0)
}

/// Past this many keys, answers older than `stale_for` are dropped.
const MOST_HELD: usize = 4096;

type Answer<V> = Option<Result<Arc<V>, Status>>;

struct Held<V> {
    view: Arc<V>,
    /// When it was asked for.
    at: Instant,
    /// The changes counted when it was asked for, if they were.
    changes: Option<u64>,
    whole: bool,
}

struct Refresh<V> {
    /// When it was started (it asks for the view then or later).
    created: Instant,
    answer: watch::Receiver<Answer<V>>,
    /// Under way (not waiting its turn).
    begun: Arc<AtomicBool>,
}

struct Slot<V> {
    held: Option<Held<V>>,
    refresh: Option<Refresh<V>>,
}

pub struct ViewCache<V> {
    settings: CacheSettings,
    slots: Arc<Mutex<HashMap<String, Slot<V>>>>,
    assembling: Arc<tokio::sync::Semaphore>,
}

impl<V: Send + Sync + 'static> ViewCache<V> {
    pub fn new(settings: CacheSettings) -> Self {
        ViewCache {
            settings,
            slots: Arc::default(),
            assembling: Arc::new(tokio::sync::Semaphore::new(settings.assembling.max(1))),
        }
    }

    /// The view under `key`: held, or from `fetch`. `wrote_at` is when the
    /// caller's latest write was answered, if they wrote; `changes`, when
    /// known, the count of changes to what
    /// the view shows, from any source; `whole` tells an answer with nothing
    /// missing.
    pub async fn get<F, Fut>(
        &self,
        key: String,
        wrote_at: Option<Instant>,
        changes: Option<u64>,
        whole: fn(&V) -> bool,
        fetch: F,
    ) -> Result<Arc<V>, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, Status>> + Send + 'static,
    {
        let CacheSettings {
            max_age,
            quiet_for,
            stale_for,
            ..
        } = self.settings;
        if max_age.is_zero() {
            return fetch().await.map(Arc::new);
        }
        let now = Instant::now();
        let mut answer = {
            let mut slots = self.slots.lock().expect("the view cache's lock");
            if slots.len() >= MOST_HELD && !slots.contains_key(&key) {
                slots.retain(|_, s| {
                    s.refresh.is_some() || s.held.as_ref().is_some_and(|h| h.at + stale_for > now)
                });
            }
            let slot = slots.entry(key.clone()).or_insert(Slot {
                held: None,
                refresh: None,
            });
            let mut stale = None;
            // Asked for after the caller's write, an answer shows it.
            let after_write = |at: Instant| wrote_at.is_none_or(|w| at > w);
            if let Some(h) = &slot.held
                && after_write(h.at)
            {
                let age = now.saturating_duration_since(h.at);
                let fresh_for = match (changes, h.changes) {
                    (Some(now), Some(then)) if now == then => spread(quiet_for, &key).max(max_age),
                    _ => max_age,
                };
                if age < fresh_for && h.whole {
                    return Ok(h.view.clone());
                }
                if age < stale_for {
                    stale = Some(h.view.clone());
                }
            }
            // A caller served a held answer meanwhile may join (or start) an
            // assembly that waits its turn; a caller who must wait joins only
            // one already under way, else starts its own at once.
            let serving = stale.is_some();
            let answer = match &slot.refresh {
                Some(r)
                    if after_write(r.created) && (serving || r.begun.load(Ordering::Acquire)) =>
                {
                    r.answer.clone()
                }
                _ => {
                    let (answer, begun) = self.start(key, changes, whole, serving, fetch());
                    slot.refresh = Some(Refresh {
                        created: now,
                        answer: answer.clone(),
                        begun,
                    });
                    answer
                }
            };
            if let Some(view) = stale {
                return Ok(view);
            }
            answer
        };
        match answer.wait_for(Option::is_some).await {
            Ok(a) => a.clone().expect("waited for an answer"),
            Err(_) => Err(Status::internal("the view was not assembled")),
        }
    }

    /// Assembles a fresh answer on its own task, so that it lands even if
    /// the caller who asked first has gone; `queued`, it first waits its turn
    /// among the assemblies under way.
    fn start<Fut>(
        &self,
        key: String,
        changes: Option<u64>,
        whole: fn(&V) -> bool,
        queued: bool,
        fetch: Fut,
    ) -> (watch::Receiver<Answer<V>>, Arc<AtomicBool>)
    where
        Fut: Future<Output = Result<V, Status>> + Send + 'static,
    {
        let (tx, rx) = watch::channel(None);
        let ours = rx.clone();
        let begun = Arc::new(AtomicBool::new(!queued));
        let (slots, assembling, started) =
            (self.slots.clone(), self.assembling.clone(), begun.clone());
        tokio::spawn(
            async move {
                let _turn = if queued {
                    assembling.acquire_owned().await.ok()
                } else {
                    None
                };
                started.store(true, Ordering::Release);
                let at = Instant::now();
                let answer = fetch.await.map(Arc::new);
                if let Some(slot) = slots.lock().expect("the view cache's lock").get_mut(&key) {
                    if let Ok(view) = &answer
                        && slot.held.as_ref().is_none_or(|h| h.at <= at)
                    {
                        slot.held = Some(Held {
                            view: view.clone(),
                            at,
                            changes,
                            whole: whole(view),
                        });
                    }
                    if slot
                        .refresh
                        .as_ref()
                        .is_some_and(|r| r.answer.same_channel(&ours))
                    {
                        slot.refresh = None;
                    }
                }
                let _ = tx.send(Some(answer));
            }
            .in_current_span(),
        );
        (rx, begun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn cache(max_age_ms: u64) -> ViewCache<u32> {
        ViewCache::new(CacheSettings {
            max_age: Duration::from_millis(max_age_ms),
            quiet_for: Duration::from_millis(max_age_ms),
            stale_for: Duration::from_secs(10),
            assembling: 2,
        })
    }

    /// A fetch that counts how often it ran and answers with the count.
    fn counting(
        n: &Arc<AtomicU32>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<u32, Status>> + Send>> + use<>
    {
        let n = n.clone();
        move || {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(n.fetch_add(1, Ordering::SeqCst) + 1)
            })
        }
    }

    fn whole(_: &u32) -> bool {
        true
    }

    /// A whole view under `key`, fetched (when it must be) by `counting(n)`.
    async fn ask(
        c: &ViewCache<u32>,
        key: &str,
        wrote_at: Option<Instant>,
        changes: Option<u64>,
        n: &Arc<AtomicU32>,
    ) -> u32 {
        *c.get(key.into(), wrote_at, changes, whole, counting(n))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn callers_at_once_share_one_fetch_and_a_write_asks_again() {
        let c = cache(60_000);
        let n = Arc::new(AtomicU32::new(0));
        let answers = futures_util::future::join_all(
            (0..8).map(|_| c.get("a".into(), None, None, whole, counting(&n))),
        )
        .await;
        assert!(answers.iter().all(|a| **a.as_ref().unwrap() == 1));
        assert_eq!(ask(&c, "a", None, None, &n).await, 1);
        // Another key is its own view.
        assert_eq!(ask(&c, "b", None, None, &n).await, 2);
        // The caller wrote since: asked again, and waited for.
        let wrote = Some(Instant::now());
        assert_eq!(ask(&c, "a", wrote, None, &n).await, 3);
        // That answer was asked for after the write: held for them too.
        assert_eq!(ask(&c, "a", wrote, None, &n).await, 3);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_old_answer_is_served_while_a_fresh_one_comes() {
        let c = cache(30);
        let n = Arc::new(AtomicU32::new(0));
        assert_eq!(ask(&c, "a", None, None, &n).await, 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Old: served at once, and a fresh one starts.
        assert_eq!(ask(&c, "a", None, None, &n).await, 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(ask(&c, "a", None, None, &n).await, 2);
    }

    #[tokio::test]
    async fn a_partial_answer_is_asked_again_and_errors_are_not_held() {
        let c = cache(60_000);
        let n = Arc::new(AtomicU32::new(0));
        let partial = |_: &u32| false;
        assert_eq!(
            *c.get("a".into(), None, None, partial, counting(&n))
                .await
                .unwrap(),
            1
        );
        // Served again at once, but never without asking anew.
        assert_eq!(
            *c.get("a".into(), None, None, partial, counting(&n))
                .await
                .unwrap(),
            1
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            *c.get("a".into(), None, None, partial, counting(&n))
                .await
                .unwrap(),
            2
        );
        let refused = c
            .get("e".into(), None, None, whole, || async {
                Err::<u32, _>(Status::not_found("no such community"))
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound);
        let m = Arc::new(AtomicU32::new(0));
        assert_eq!(ask(&c, "e", None, None, &m).await, 1);
    }

    #[tokio::test]
    async fn a_caller_who_must_wait_never_queues_behind_background_assemblies() {
        let c = ViewCache::new(CacheSettings {
            max_age: Duration::from_millis(10),
            quiet_for: Duration::from_millis(10),
            stale_for: Duration::from_secs(10),
            assembling: 1,
        });
        let n = Arc::new(AtomicU32::new(0));
        assert_eq!(ask(&c, "a", None, None, &n).await, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // "a" is old: served as held while a slow assembly takes the one turn.
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(99)
        };
        assert_eq!(
            *c.get("a".into(), None, None, whole, slow).await.unwrap(),
            1
        );
        // "b" has nothing held: its caller's assembly starts at once.
        let started = Instant::now();
        assert_eq!(ask(&c, "b", None, None, &n).await, 2);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn zero_max_age_holds_nothing() {
        let c = cache(0);
        let n = Arc::new(AtomicU32::new(0));
        assert_eq!(ask(&c, "a", None, None, &n).await, 1);
        assert_eq!(ask(&c, "a", None, None, &n).await, 2);
    }

    #[tokio::test]
    async fn held_longer_while_no_change_is_counted() {
        let c = ViewCache::new(CacheSettings {
            max_age: Duration::from_millis(30),
            quiet_for: Duration::from_secs(60),
            stale_for: Duration::from_secs(10),
            assembling: 2,
        });
        let n = Arc::new(AtomicU32::new(0));
        assert_eq!(ask(&c, "a", None, Some(5), &n).await, 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Past max_age, but nothing changed: still current.
        assert_eq!(ask(&c, "a", None, Some(5), &n).await, 1);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        // A change: the held one is served while a fresh one comes.
        assert_eq!(ask(&c, "a", None, Some(6), &n).await, 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(ask(&c, "a", None, Some(6), &n).await, 2);
        // Changes no longer counted (a feed broke): by age alone again.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(ask(&c, "a", None, None, &n).await, 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(ask(&c, "a", None, None, &n).await, 3);
    }
}
