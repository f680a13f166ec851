//! `GatewayService`: the views people work from, each assembled from the
//! services concurrently. Every part is asked with the caller's own token
//! (so each service authorizes it where its records live) and has its own
//! deadline; a part that fails or is late is left out and named in
//! `missing`, so a view always answers in time with what could be had.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use linli_core::{Actor, Error};
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::gateway_service_server::GatewayService;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::logistics::v1 as lpb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

mod dashboard;

use dashboard::Assembly;
pub(crate) use dashboard::statistics_hold;

use crate::backend::Backend;
use crate::cache::ViewCache;
use crate::changes::Changes;
use crate::policy::POLICY;

#[derive(Clone)]
pub struct ViewsApi {
    pub(crate) people: Backend,
    pub(crate) issues: Backend,
    pub(crate) logistics: Backend,
    pub(crate) part_timeout: Duration,
    /// Dashboards by community and the asker's role.
    pub(crate) dashboards: Arc<ViewCache<pb::GetCommunityDashboardResponse>>,
    /// Dashboards' issue statistics by community and the asker's role, held
    /// longer than the rest of a dashboard while nothing changes (see
    /// `ViewsApi::statistics`).
    pub(crate) statistics: Arc<ViewCache<ipb::GetStatisticsResponse>>,
    /// County overviews by the asker's role and scope.
    pub(crate) overviews: Arc<ViewCache<pb::GetCountyOverviewResponse>>,
    /// What the feeds say has changed, for the dashboards held.
    pub(crate) changes: Arc<Changes>,
    /// Live streams open, per caller and in all (shared with the pages').
    pub(crate) streams: Arc<crate::streams::StreamSlots>,
    /// When each caller was last told of a change (see `told`).
    pub(crate) told: Arc<crate::backend::Callers>,
}

type Resp<T> = Result<Response<T>, Status>;
type Part<T> = Result<T, pb::MissingPart>;

/// How many communities the county overview asks about at once, per service.
const OVERVIEW_CONCURRENCY: usize = 16;
/// Visits shown on a household profile.
const RECENT_VISITS: usize = 10;

fn missing(part: &str, status: &Status) -> pb::MissingPart {
    pb::MissingPart {
        part: part.to_owned(),
        code: linli_core::metrics::code_name(status.code()).to_owned(),
        reason: status.message().to_owned(),
    }
}

/// Keeps a part that came, noting one that did not.
fn take<T>(missing: &mut Vec<pb::MissingPart>, part: Part<T>) -> Option<T> {
    part.map_err(|m| missing.push(m)).ok()
}

impl ViewsApi {
    /// When `actor`'s latest write through this gateway, to any service, was
    /// answered, or they were last told of a change (`told`): a held view
    /// assembled before it is not served to them.
    fn wrote_at(&self, actor: &Actor) -> Option<Instant> {
        [&self.people, &self.issues, &self.logistics]
            .iter()
            .filter_map(|b| b.wrote_at(&actor.id))
            .chain(self.told.noted(&actor.id))
            .max()
    }

    /// `actor` has been told of a change (a live page's event): what they
    /// ask for next is assembled after it.
    pub fn told(&self, actor: &Actor) {
        self.told.note(&actor.id);
    }

    fn people(&self) -> PeopleServiceClient<Backend> {
        PeopleServiceClient::new(self.people.clone())
    }
    fn issues(&self) -> IssuesServiceClient<Backend> {
        IssuesServiceClient::new(self.issues.clone())
    }
    fn logistics(&self) -> LogisticsServiceClient<Backend> {
        LogisticsServiceClient::new(self.logistics.clone())
    }

    /// A request to a service on the caller's behalf, with the part's deadline.
    fn req<M>(&self, actor: &Actor, msg: M) -> Request<M> {
        let mut req = actor.request(msg);
        req.set_timeout(self.part_timeout);
        req
    }

    /// One part of a view, given at most the part deadline.
    async fn part<R>(
        &self,
        name: &str,
        call: impl Future<Output = Result<Response<R>, Status>>,
    ) -> Part<R> {
        match tokio::time::timeout(self.part_timeout, call).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(missing(name, &status)),
            Err(_) => Err(missing(
                name,
                &Status::deadline_exceeded(format!(
                    "no answer within {} ms",
                    self.part_timeout.as_millis()
                )),
            )),
        }
    }

    /// Every community of the county, in the order of the place tree.
    async fn communities(&self, actor: &Actor) -> Result<Response<Vec<ppb::Place>>, Status> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .people()
                .list_places(self.req(
                    actor,
                    ppb::ListPlacesRequest {
                        kind: ppb::PlaceKind::Community as i32,
                        page_size: 500,
                        page_token,
                        ..Default::default()
                    },
                ))
                .await?
                .into_inner();
            all.extend(page.places);
            if page.next_page_token.is_empty() {
                return Ok(Response::new(all));
            }
            page_token = page.next_page_token;
        }
    }

    /// One figure for every community from one service, asked a few at a time;
    /// the failures come back as one missing part naming how many failed.
    async fn per_community<R, F, Fut>(
        &self,
        name: &str,
        communities: &[String],
        ask: F,
    ) -> (Vec<Option<R>>, Option<pb::MissingPart>)
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let all = futures_util::stream::iter(communities.iter().cloned().map(&ask))
            .buffered(OVERVIEW_CONCURRENCY)
            .collect::<Vec<_>>();
        let results = match tokio::time::timeout(self.part_timeout, all).await {
            Ok(results) => results,
            Err(_) => {
                let late = Status::deadline_exceeded(format!(
                    "no answer within {} ms",
                    self.part_timeout.as_millis()
                ));
                return (
                    communities.iter().map(|_| None).collect(),
                    Some(missing(name, &late)),
                );
            }
        };
        let mut failed = 0;
        let mut first: Option<Status> = None;
        let out = results
            .into_iter()
            .map(|r| match r {
                Ok(resp) => Some(resp.into_inner()),
                Err(s) => {
                    failed += 1;
                    first.get_or_insert(s);
                    None
                }
            })
            .collect();
        let gap = first.map(|s| {
            let mut m = missing(name, &s);
            m.reason = format!(
                "{failed} of {} communities: {}",
                communities.len(),
                m.reason
            );
            m
        });
        (out, gap)
    }

    /// The county overview: every community's figures from each service.
    async fn overview(&self, actor: Actor) -> Result<pb::GetCountyOverviewResponse, Status> {
        let as_of = linli_core::time::now_micros();
        let a = &actor;
        let mut gaps = Vec::new();
        let (places, ranking) = tokio::join!(
            self.part("people.communities", self.communities(a)),
            self.part("issues.ranking", async {
                self.issues()
                    .get_ranking(self.req(
                        a,
                        ipb::GetRankingRequest {
                            scope: ipb::RankingScope::Community as i32,
                            ..Default::default()
                        },
                    ))
                    .await
            }),
        );
        let places = take(&mut gaps, places).unwrap_or_default();
        let ranking = take(&mut gaps, ranking)
            .map(|r| r.entries)
            .unwrap_or_default();
        let ids: Vec<String> = places.iter().map(|p| p.id.clone()).collect();
        let ((people, p_gap), (issues, i_gap), (logistics, l_gap)) = tokio::join!(
            self.per_community("people.summaries", &ids, |community_id| {
                let mut c = self.people();
                let req = self.req(a, ppb::GetCommunitySummaryRequest { community_id });
                async move { c.get_community_summary(req).await }
            }),
            self.per_community("issues.summaries", &ids, |community_id| {
                let mut c = self.issues();
                let req = self.req(a, ipb::GetCommunitySummaryRequest { community_id });
                async move { c.get_community_summary(req).await }
            }),
            self.per_community("logistics.summaries", &ids, |community_id| {
                let mut c = self.logistics();
                let req = self.req(a, lpb::GetCommunitySummaryRequest { community_id });
                async move { c.get_community_summary(req).await }
            }),
        );
        gaps.extend([p_gap, i_gap, l_gap].into_iter().flatten());
        let communities = places
            .into_iter()
            .zip(people)
            .zip(issues)
            .zip(logistics)
            .map(
                |(((place, people), issues), logistics)| pb::CommunityFigures {
                    community_id: place.id,
                    name: place.name,
                    people,
                    issues,
                    logistics,
                },
            )
            .collect();
        Ok(pb::GetCountyOverviewResponse {
            missing: gaps,
            communities,
            ranking,
            as_of: Some(linli_core::time::to_timestamp(as_of)),
        })
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchCommunityResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GatewayService for ViewsApi {
    async fn get_community_dashboard(
        &self,
        req: Request<pb::GetCommunityDashboardRequest>,
    ) -> Resp<pb::GetCommunityDashboardResponse> {
        let actor = POLICY.allow("GetCommunityDashboard", &req)?;
        let asked = req.into_inner();
        let community_id = actor.community_filter("community_id", &asked.community_id)?;
        if community_id.is_empty() {
            return Err(Error::required("community_id").into());
        }
        if asked.fresh {
            return Ok(Response::new(
                self.dashboard(actor, community_id, Assembly::Fresh).await?,
            ));
        }
        // What a dashboard holds depends on the community and the asker's role only.
        let key = format!("{community_id}/{:?}", actor.role);
        let changes = self.changes.of(&community_id);
        let views = self.clone();
        let dashboard = self
            .dashboards
            .get(
                key,
                self.wrote_at(&actor),
                changes,
                |d| d.missing.is_empty(),
                move || async move {
                    let d = views
                        .dashboard(actor, community_id.clone(), Assembly::Held)
                        .await?;
                    // A community known to exist (its every part answered)
                    // is followed from now on.
                    if d.missing.is_empty() {
                        views.changes.follow(&community_id);
                    }
                    Ok(d)
                },
            )
            .await?;
        Ok(Response::new(dashboard.as_ref().clone()))
    }

    async fn get_household_profile(
        &self,
        req: Request<pb::GetHouseholdProfileRequest>,
    ) -> Resp<pb::GetHouseholdProfileResponse> {
        let actor = POLICY.allow("GetHouseholdProfile", &req)?;
        let asked = req.into_inner().household_id;
        let household_id = match (asked.is_empty(), &actor.household) {
            (true, Some(own)) => own.clone(),
            (true, None) => return Err(Error::required("household_id").into()),
            (false, _) => {
                actor.check_household(&asked)?;
                asked
            }
        };
        let h = || household_id.clone();
        let a = &actor;
        let (household, visits, issues, deliveries) = tokio::join!(
            self.part("people.household", async {
                self.people()
                    .get_household(self.req(
                        a,
                        ppb::GetHouseholdRequest {
                            household_id: h(),
                            view: ppb::ResidentView::Masked as i32,
                        },
                    ))
                    .await
            }),
            self.part("people.visits", async {
                self.people()
                    .list_visits(self.req(
                        a,
                        ppb::ListVisitsRequest {
                            household_id: h(),
                            page_size: 500,
                            ..Default::default()
                        },
                    ))
                    .await
            }),
            self.part("issues.issues", async {
                self.issues()
                    .list_issues(self.req(
                        a,
                        ipb::ListIssuesRequest {
                            household_id: h(),
                            page_size: 100,
                            ..Default::default()
                        },
                    ))
                    .await
            }),
            self.part("logistics.deliveries", async {
                self.logistics()
                    .list_deliveries(self.req(
                        a,
                        lpb::ListDeliveriesRequest {
                            household_id: h(),
                            page_size: 100,
                            ..Default::default()
                        },
                    ))
                    .await
            }),
        );
        if let Err(m) = &household
            && m.code == "NOT_FOUND"
        {
            return Err(Error::not_found("household", &household_id).into());
        }
        let mut gaps = Vec::new();
        let household = take(&mut gaps, household);
        let mut recent_visits = take(&mut gaps, visits)
            .map(|v| v.visits)
            .unwrap_or_default();
        recent_visits.sort_by_key(|v| std::cmp::Reverse(v.at.map(|t| (t.seconds, t.nanos))));
        recent_visits.truncate(RECENT_VISITS);
        // The other services keep no household list: a household another
        // community owns is NOT_FOUND by people, and nothing else is shown.
        let resp = pb::GetHouseholdProfileResponse {
            household,
            recent_visits,
            issues: take(&mut gaps, issues)
                .map(|i| i.issues)
                .unwrap_or_default(),
            deliveries: take(&mut gaps, deliveries)
                .map(|d| d.deliveries)
                .unwrap_or_default(),
            missing: gaps,
        };
        Ok(Response::new(resp))
    }

    async fn get_county_overview(
        &self,
        req: Request<pb::GetCountyOverviewRequest>,
    ) -> Resp<pb::GetCountyOverviewResponse> {
        let actor = POLICY.allow("GetCountyOverview", &req)?;
        // What an overview holds depends on the asker's role and reach only.
        let key = format!("{:?}/{:?}", actor.role, actor.scope);
        let views = self.clone();
        // Not asked anew after each write, as a dashboard is: the county's
        // figures move with every community's work, and an overview is for
        // watching them, not for checking one's own change.
        let overview = self
            .overviews
            .get(
                key,
                None,
                None,
                |o| o.missing.is_empty(),
                move || async move { views.overview(actor).await },
            )
            .await?;
        Ok(Response::new(overview.as_ref().clone()))
    }

    type WatchCommunityStream = WatchStream;

    async fn watch_community(
        &self,
        req: Request<pb::WatchCommunityRequest>,
    ) -> Resp<Self::WatchCommunityStream> {
        let actor = POLICY.allow("WatchCommunity", &req)?;
        // Held by the stream, so the place is given back when the caller stops watching.
        let slot = match req.extensions().get::<crate::streams::Counted>() {
            Some(_) => None,
            None => {
                let most = if actor.is_county() {
                    crate::streams::PER_COUNTY_CALLER
                } else {
                    crate::streams::PER_CALLER
                };
                Some(self.streams.take(&format!("grpc:{}", actor.id), most)?)
            }
        };
        let r = req.into_inner();
        let community_id = actor.community_filter("community_id", &r.community_id)?;
        if community_id.is_empty() {
            return Err(Error::required("community_id").into());
        }
        let cursor = if r.from_now {
            Cursor::default()
        } else {
            Cursor::parse(&r.after_cursor)?
        };
        // No deadline: the streams live as long as the caller watches.
        let (mut issues_client, mut logistics_client) = (self.issues(), self.logistics());
        let (issues, logistics) = tokio::join!(
            issues_client.watch_issues(actor.request(ipb::WatchIssuesRequest {
                community_id: community_id.clone(),
                after_seq: cursor.issues,
                from_now: r.from_now,
            })),
            logistics_client.watch_logistics(actor.request(lpb::WatchLogisticsRequest {
                community_id,
                after_seq: cursor.logistics,
                from_now: r.from_now,
            })),
        );
        use pb::watch_community_response::Event;
        let issues = issues?
            .into_inner()
            .map(|item| item.map(|r| Event::Issue(r.event.unwrap_or_default())));
        let logistics = logistics?
            .into_inner()
            .map(|item| item.map(|r| Event::Logistics(r.event.unwrap_or_default())));
        // Each event's cursor holds both positions as of that event, so a
        // reconnect resumes each source just after what the caller has seen.
        let mut at = cursor;
        let stream = tokio_stream::StreamExt::merge(issues, logistics).map(move |item| {
            let _ = &slot;
            item.map(|event| {
                match &event {
                    Event::Issue(e) => at.issues = e.seq,
                    Event::Logistics(e) => at.logistics = e.seq,
                }
                pb::WatchCommunityResponse {
                    cursor: at.to_string(),
                    event: Some(event),
                }
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Where a watcher is in each source's stream, written `issues:<seq>,logistics:<seq>`
/// (a source left out is at 0), so further sources can be added without breaking saved cursors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    issues: i64,
    logistics: i64,
}

impl Cursor {
    fn parse(s: &str) -> Result<Cursor, Status> {
        let mut cursor = Cursor::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let bad = || Error::invalid("after_cursor", "is not a cursor this stream gave");
            let (source, seq) = part.split_once(':').ok_or_else(bad)?;
            let seq: i64 = seq.parse().map_err(|_| bad())?;
            match source {
                "issues" if seq >= 0 => cursor.issues = seq,
                "logistics" if seq >= 0 => cursor.logistics = seq,
                _ => return Err(bad().into()),
            }
        }
        Ok(cursor)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "issues:{},logistics:{}", self.issues, self.logistics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            issues: 42,
            logistics: 7,
        };
        assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        assert_eq!(Cursor::parse("").unwrap(), Cursor::default());
        assert_eq!(
            Cursor::parse("issues:3").unwrap(),
            Cursor {
                issues: 3,
                logistics: 0
            }
        );
        for bad in ["42", "issues:x", "issues:-1", "other:1", "issues"] {
            assert_eq!(
                Cursor::parse(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }
}
