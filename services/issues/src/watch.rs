//! A community's events as a stream, resumable from a cursor without gaps or repeats.
use tonic::{Request, Response};

use linli_core::{Actor, Error, Result};
use linli_proto::issues::v1 as pb;

use crate::context::*;
use crate::store::*;

/// The stream `WatchIssues` answers with.
pub type WatchStream = linli_core::feed::Stream<pb::WatchIssuesResponse>;

pub(crate) async fn watch_issues(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::WatchIssuesRequest>,
) -> Resp<WatchStream> {
    let r = req.into_inner();
    let community = actor.community_or_own("community_id", &r.community_id)?;
    if r.after_seq < 0 {
        return Err(Error::invalid("after_seq", "must not be negative").into());
    }
    let store = api.store.clone();
    let after = if r.from_now {
        store.latest_event_seq(&community).await?
    } else {
        r.after_seq
    };
    let head = store.heads.watch(&community);
    let fetch = move |after: i64, limit: i64| {
        let (store, community) = (store.clone(), community.clone());
        async move { store.events_after(&community, after, limit).await }
    };
    Ok(Response::new(linli_core::feed::serve(
        after,
        head,
        fetch,
        |e| e.seq,
        |event| pb::WatchIssuesResponse { event: Some(event) },
    )))
}

impl Store {
    /// The seq of a community's newest event, 0 when it has none.
    pub async fn latest_event_seq(&self, community_id: &str) -> Result<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM issue_events WHERE community_id = $1")
                .bind(community_id)
                .fetch_one(&self.db.pool)
                .await?;
        Ok(seq.unwrap_or(0))
    }

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
