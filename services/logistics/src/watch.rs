//! A community's batch, delivery and stock changes as a stream, read from its
//! audit chain (every change is recorded there, in order, by every replica),
//! resumable from a cursor without gaps or repeats.
use tonic::{Request, Response};

use linli_core::{Actor, Error};
use linli_proto::logistics::v1 as pb;

use crate::context::{LogisticsApi, Resp};

/// The records whose changes are streamed.
const STREAMED: &[&str] = &["batch", "delivery", "stock_movement"];

pub type WatchStream = linli_core::feed::Stream<pb::WatchLogisticsResponse>;

pub(crate) async fn watch_logistics(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::WatchLogisticsRequest>,
) -> Resp<WatchStream> {
    let r = req.into_inner();
    let community = actor.community_or_own("community_id", &r.community_id)?;
    if r.after_seq < 0 {
        return Err(Error::invalid("after_seq", "must not be negative").into());
    }
    let db = api.store.db.clone();
    let head = api.store.heads.watch(&community);
    let after = if r.from_now {
        linli_core::audit::head_seq(&db, &community).await?
    } else {
        r.after_seq
    };
    let fetch = move |after: i64, limit: i64| {
        let (db, community) = (db.clone(), community.clone());
        async move { linli_core::audit::events_after(&db, &community, after, STREAMED, limit).await }
    };
    Ok(Response::new(linli_core::feed::serve(
        after,
        head,
        fetch,
        |e| e.seq,
        |event| pb::WatchLogisticsResponse { event: Some(event) },
    )))
}
