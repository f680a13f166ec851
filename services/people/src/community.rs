//! A community's figures at a glance, and its audit trail.

use tonic::{Request, Response};

use linli_core::{Actor, Result};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::*;
use crate::store::*;

pub(crate) async fn get_community_summary(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetCommunitySummaryRequest>,
) -> Resp<pb::GetCommunitySummaryResponse> {
    let community = actor.community_or_own("community_id", &req.get_ref().community_id)?;
    Ok(Response::new(
        api.store.community_summary(&community).await?,
    ))
}

linli_core::audit_handlers!(PeopleApi);

impl Store {
    pub async fn community_summary(
        &self,
        community_id: &str,
    ) -> Result<pb::GetCommunitySummaryResponse> {
        let mut conn = self.db.pool.acquire().await?;
        let community = self.load_community(&mut conn, community_id).await?;
        let (households, vulnerable, intensive): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN care_level >= $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN care_level >= $3 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM households WHERE community_id = $1",
        )
        .bind(community_id)
        .bind(i64::from(CareLevel::Watch.to_proto()))
        .bind(i64::from(CareLevel::Intensive.to_proto()))
        .fetch_one(&mut *conn)
        .await?;
        let count =
            |sql: &'static str| sqlx::query_as::<_, (i64,)>(sql).bind(community_id.to_owned());
        let (residents,) =
            count("SELECT COUNT(*) FROM residents WHERE community_id = $1 AND removed_at IS NULL")
                .fetch_one(&mut *conn)
                .await?;
        let (cadres,) = count(
            "SELECT COUNT(*) FROM registrations WHERE community_id = $1 AND state = 'active'",
        )
        .fetch_one(&mut *conn)
        .await?;
        let (paired,) = count("SELECT COUNT(DISTINCT household_id) FROM pairings WHERE community_id = $1 AND ended_at IS NULL").fetch_one(&mut *conn).await?;
        Ok(pb::GetCommunitySummaryResponse {
            community: Some(community),
            households: households as i32,
            residents: residents as i32,
            vulnerable_households: vulnerable as i32,
            intensive_care_households: intensive as i32,
            cadres_registered: cadres as i32,
            households_paired: paired as i32,
        })
    }
}
