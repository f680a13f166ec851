//! A change feed served as a gRPC stream: records after a cursor, in order,
//! then each new one as it is written, so a client that reconnects with the
//! last position it saw misses nothing and sees nothing twice. Records come
//! from the database, so those written by other replicas arrive too (by
//! polling); a replica's own writes can wake the feed at once.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tonic::Status;

use crate::Result;

/// A server-streaming response.
pub type Stream<T> =
    Pin<Box<dyn tokio_stream::Stream<Item = std::result::Result<T, Status>> + Send>>;

/// How often a quiet feed looks for records other replicas wrote.
const POLL: Duration = Duration::from_millis(500);
/// Records read at a time.
const BATCH: i64 = 200;
/// How long a feed keeps reading again while the database is unavailable
/// before it ends the stream with UNAVAILABLE (the caller then reconnects,
/// perhaps to another replica, from its last position).
const KEEP_TRYING: Duration = Duration::from_secs(30);

/// Streams what `fetch(after, limit)` returns, from `after` on, each record's
/// position told by `position` and sent as `wrap` makes it. `written`, when
/// given, is notified by this replica's writers.
pub fn serve<T, R, F, Fut>(
    after: i64,
    written: Option<Arc<Notify>>,
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
            // Register for a wake-up before reading, so a record written in between is not missed.
            let woken = written.as_ref().map(|n| n.notified());
            match fetch(cursor, BATCH).await {
                Ok(records) if !records.is_empty() => {
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
            let woken = async {
                match woken {
                    Some(w) => w.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(POLL) => {}
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
        let mut feed = serve(
            0,
            None,
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
}
