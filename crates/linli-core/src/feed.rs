//! A change feed served as a gRPC stream: records after a cursor, in order,
//! then each new one as it is written, so a client that reconnects with the
//! last position it saw misses nothing and sees nothing twice. Records come
//! from the database, so those written by other replicas arrive too.
//!
//! A quiet feed does not poll: one [`Heads`] per process reads where every
//! community's records stand (one small query every `POLL`, or at once when
//! this replica has written) and wakes only the feeds whose community moved.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tonic::Status;

use crate::Result;

/// A server-streaming response.
pub type Stream<T> =
    Pin<Box<dyn tokio_stream::Stream<Item = std::result::Result<T, Status>> + Send>>;

/// How often the heads are read for records other replicas wrote.
const POLL: Duration = Duration::from_millis(500);
/// Records read at a time.
const BATCH: i64 = 200;
/// How long a feed keeps reading again while the database is unavailable
/// before it ends the stream with UNAVAILABLE (the caller then reconnects,
/// perhaps to another replica, from its last position).
const KEEP_TRYING: Duration = Duration::from_secs(30);

type ReadHeads =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<(String, i64)>>> + Send>> + Send + Sync>;

/// Where each watched community's records stand: the newest position, read
/// for all communities at once by one task per process.
#[derive(Clone)]
pub struct Heads {
    inner: Arc<HeadsInner>,
}

struct HeadsInner {
    read: ReadHeads,
    watched: Mutex<HashMap<String, watch::Sender<i64>>>,
    /// Wakes the reader: this replica has written.
    written: Notify,
    started: std::sync::Once,
}

impl Heads {
    /// `read` returns every community's newest position (communities with
    /// none may be left out). Nothing is read until a feed watches.
    pub fn new<F, Fut>(read: F) -> Heads
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<(String, i64)>>> + Send + 'static,
    {
        Heads {
            inner: Arc::new(HeadsInner {
                read: Arc::new(move || Box::pin(read())),
                watched: Mutex::default(),
                written: Notify::new(),
                started: std::sync::Once::new(),
            }),
        }
    }

    /// Heads kept in `table` (`community_id`, `seq`), one row per community.
    pub fn in_table(db: &crate::Db, table: &'static str) -> Heads {
        let db = db.clone();
        let sql = format!("SELECT community_id, seq FROM {table}");
        Heads::new(move || {
            let (db, sql) = (db.clone(), sql.clone());
            async move {
                let heads = sqlx::query_as(&sql).fetch_all(&db.pool).await?;
                Ok(heads)
            }
        })
    }

    /// This replica has written: read the heads now rather than at the next poll.
    pub fn written(&self) {
        self.inner.written.notify_one();
    }

    /// The newest position of `community`'s records, as the reader last saw
    /// it (0 until it has read once).
    pub fn watch(&self, community: &str) -> watch::Receiver<i64> {
        let weak = Arc::downgrade(&self.inner);
        self.inner
            .started
            .call_once(|| drop(tokio::spawn(read_heads(weak))));
        let mut watched = self.inner.watched.lock().expect("the heads' lock");
        watched
            .entry(community.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// The reader: while anyone watches, every `POLL` (or when woken) reads all
/// heads and moves the watched ones on. Ends when the `Heads` are dropped.
async fn read_heads(inner: Weak<HeadsInner>) {
    loop {
        let Some(heads) = inner.upgrade() else { return };
        let read = {
            let mut watched = heads.watched.lock().expect("the heads' lock");
            watched.retain(|_, tx| tx.receiver_count() > 0);
            (!watched.is_empty()).then(|| (heads.read)())
        };
        if let Some(read) = read {
            match read.await {
                Ok(all) => {
                    let watched = heads.watched.lock().expect("the heads' lock");
                    for (community, seq) in all {
                        if let Some(tx) = watched.get(&community) {
                            tx.send_if_modified(|head| {
                                let moved = seq > *head;
                                *head = (*head).max(seq);
                                moved
                            });
                        }
                    }
                }
                // The feeds wait; they read again when the database answers.
                Err(e) => tracing::debug!(error = %e, "could not read the feeds' heads"),
            }
        }
        let woken = async { heads.written.notified().await };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Streams what `fetch(after, limit)` returns, from `after` on, each record's
/// position told by `position` and sent as `wrap` makes it; `head` tells
/// when there may be more.
pub fn serve<T, R, F, Fut>(
    after: i64,
    mut head: watch::Receiver<i64>,
    fetch: F,
    position: fn(&T) -> i64,
    wrap: fn(T) -> R,
) -> Stream<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(i64, i64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<T>>> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut cursor = after;
        let mut failing_since: Option<Instant> = None;
        loop {
            // The head as it stood before reading: whatever is written
            // after the read moves the head past it.
            let seen = *head.borrow_and_update();
            match fetch(cursor, BATCH).await {
                Ok(records) if !records.is_empty() => {
                    failing_since = None;
                    for record in records {
                        cursor = position(&record);
                        if tx.send(Ok(wrap(record))).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Ok(_) => failing_since = None,
                // The database busy or briefly gone: the feed waits and reads
                // again, rather than ending every watcher's stream at once.
                Err(e)
                    if e.code() == tonic::Code::Unavailable
                        && failing_since.get_or_insert_with(Instant::now).elapsed()
                            < KEEP_TRYING =>
                {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => continue,
                        _ = tx.closed() => return,
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    return;
                }
            }
            tokio::select! {
                moved = head.wait_for(|h| *h > seen) => {
                    // The heads are gone (the service is stopping): end the stream.
                    if moved.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio_stream::StreamExt;

    use super::*;
    use crate::Error;

    #[tokio::test]
    async fn a_feed_rides_out_a_busy_database_and_ends_on_other_errors() {
        let tries = Arc::new(AtomicU32::new(0));
        let t = tries.clone();
        let (_head, head) = watch::channel(0);
        let mut feed = serve(
            0,
            head,
            move |after: i64, _limit: i64| {
                let n = t.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 | 1 => Err(Error::Unavailable("pool timed out".into())),
                        2 => Ok(vec![after + 1, after + 2]),
                        _ => Err(Error::Internal(anyhow::anyhow!("broken"))),
                    }
                }
            },
            |r: &i64| *r,
            |r: i64| r,
        );
        assert_eq!(feed.next().await.unwrap().unwrap(), 1);
        assert_eq!(feed.next().await.unwrap().unwrap(), 2);
        let ended = feed.next().await.unwrap().unwrap_err();
        assert_eq!(ended.code(), tonic::Code::Internal);
        assert!(feed.next().await.is_none());
        assert_eq!(tries.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn one_reader_wakes_only_the_feeds_whose_community_moved() {
        type Log = Arc<Mutex<Vec<(&'static str, i64)>>>;
        let log: Log = Arc::default();
        let reads = Arc::new(AtomicU32::new(0));
        let (l, r) = (log.clone(), reads.clone());
        let heads = Heads::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
            let mut newest = HashMap::<String, i64>::new();
            for (c, seq) in l.lock().unwrap().iter() {
                let head = newest.entry(c.to_string()).or_default();
                *head = (*head).max(*seq);
            }
            async move { Ok(newest.into_iter().collect()) }
        });
        let feed = |community: &'static str| {
            let l = log.clone();
            serve(
                0,
                heads.watch(community),
                move |after: i64, _limit: i64| {
                    let records: Vec<i64> = l
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|(c, seq)| *c == community && *seq > after)
                        .map(|(_, seq)| *seq)
                        .collect();
                    async move { Ok(records) }
                },
                |seq: &i64| *seq,
                |seq: i64| seq,
            )
        };
        let started = Instant::now();
        let mut a: Vec<_> = (0..3).map(|_| feed("a")).collect();
        let mut b = feed("b");

        // Written here: the reader is woken and every feed of `a` hears of it.
        log.lock().unwrap().push(("a", 1));
        heads.written();
        for f in &mut a {
            let got = tokio::time::timeout(Duration::from_secs(5), f.next()).await;
            assert_eq!(got.unwrap().unwrap().unwrap(), 1);
        }
        // Nothing for `b` meanwhile.
        let quiet = tokio::time::timeout(Duration::from_millis(700), b.next()).await;
        assert!(quiet.is_err(), "b heard {quiet:?}");
        // Written by another replica (no wake): the next poll finds it.
        log.lock().unwrap().push(("b", 1));
        let got = tokio::time::timeout(Duration::from_secs(5), b.next()).await;
        assert_eq!(got.unwrap().unwrap().unwrap(), 1);

        // One read per poll or wake-up, however many feeds wait.
        let polls = (started.elapsed().as_millis() / POLL.as_millis()) as u32;
        let read = reads.load(Ordering::SeqCst);
        assert!(read <= polls + 3, "{read} reads in {polls} polls");
    }
}
