//! A community's events as a stream, resumable from a cursor without gaps or repeats.
use std::time::Duration;

use tonic::{Request, Response, Status};

use linli_core::validate::parse_id;
use linli_core::{Actor, Error, Result};
use linli_proto::issues::v1 as pb;

use crate::api::*;
use crate::store::*;

/// The stream `WatchIssues` answers with.
pub type WatchStream = std::pin::Pin<
    Box<
        dyn tokio_stream::Stream<Item = std::result::Result<pb::WatchIssuesResponse, Status>>
            + Send,
    >,
>;

pub(crate) async fn watch_issues(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::WatchIssuesRequest>,
) -> Resp<WatchStream> {
    let r = req.into_inner();
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    if r.after_seq < 0 {
        return Err(Error::invalid("after_seq", "must not be negative").into());
    }
    let store = api.store.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut cursor = r.after_seq;
        loop {
            // Register for a wake-up before reading, so an event written in between is not missed.
            let written = store.events_written.notified();
            match store.events_after(&community, cursor, 200).await {
                Ok(events) if !events.is_empty() => {
                    for event in events {
                        cursor = event.seq;
                        if tx
                            .send(Ok(pb::WatchIssuesResponse { event: Some(event) }))
                            .await
                            .is_err()
                        {
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
            // Events from other replicas arrive through the database: poll as well as wait.
            tokio::select! {
                _ = written => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

impl Store {
    /// A community's events after `after_seq`, in order.
    pub async fn events_after(
        &self,
        community_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<pb::IssueEvent>> {
        let rows = sqlx::query(&format!("SELECT {EVENT_COLS} FROM issue_events WHERE community_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"))
            .bind(community_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}
