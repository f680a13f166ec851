//! A community's batch, delivery and stock changes as a stream, read from its
//! audit chain (every change is recorded there, in order, by every replica),
//! resumable from a cursor without gaps or repeats.
use std::time::Duration;

use tonic::{Request, Response, Status};

use linli_core::validate::parse_id;
use linli_core::{Actor, Error};
use linli_proto::logistics::v1 as pb;

use crate::api::{LogisticsApi, Resp};

/// The records whose changes are streamed.
const STREAMED: &[&str] = &["batch", "delivery", "stock_movement"];

/// How often a quiet stream looks for changes written by any replica.
const POLL: Duration = Duration::from_millis(500);

pub type WatchStream = std::pin::Pin<
    Box<
        dyn tokio_stream::Stream<Item = std::result::Result<pb::WatchLogisticsResponse, Status>>
            + Send,
    >,
>;

pub(crate) async fn watch_logistics(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::WatchLogisticsRequest>,
) -> Resp<WatchStream> {
    let r = req.into_inner();
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    if r.after_seq < 0 {
        return Err(Error::invalid("after_seq", "must not be negative").into());
    }
    let db = api.store.db.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut cursor = r.after_seq;
        loop {
            match linli_core::audit::events_after(&db, &community, cursor, STREAMED, 200).await {
                Ok(events) if !events.is_empty() => {
                    for event in events {
                        cursor = event.seq;
                        let msg = pb::WatchLogisticsResponse { event: Some(event) };
                        if tx.send(Ok(msg)).await.is_err() {
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
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}
