//! A change feed served as a gRPC stream: records after a cursor, in order,
//! then each new one as it is written, so a client that reconnects with the
//! last position it saw misses nothing and sees nothing twice. Records come
//! from the database, so those written by other replicas arrive too (by
//! polling); a replica's own writes can wake the feed at once.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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
                Ok(_) => {}
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
