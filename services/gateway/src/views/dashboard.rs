//! The community dashboard: every part asked for at once, each with its own
//! deadline, assembled into one answer (which `get_community_dashboard` in
//! `mod.rs` holds for a moment).
use tonic::{Response, Status};

use linli_core::{Actor, Error};
use linli_proto::gateway::v1 as pb;
use linli_proto::issues::v1 as ipb;
use linli_proto::logistics::v1 as lpb;
use linli_proto::people::v1 as ppb;

use super::{ViewsApi, take};
use crate::cache::CacheSettings;

/// Weeks of reported and resolved issues on a dashboard.
const DASHBOARD_WEEKS: i32 = 8;
/// A dashboard's statistics are of the issues reported in the last twelve
/// weeks: the eight it charts and four before, so that the first weeks'
/// resolutions of issues reported earlier are counted. Bounded, so a
/// community's years of history do not make its dashboard slower.
const STATISTICS_WEEKS: i64 = 12;
const WEEK_MICROS: i64 = 7 * 24 * 3_600_000_000;
/// Open issues listed on a dashboard (the summary counts them all).
const OPEN_ISSUES_SHOWN: i32 = 100;
/// Overdue issues listed on a dashboard, the most overdue first (the summary
/// counts them all). Bounded like the open ones, so that a county with many
/// more issues does not make every dashboard answer larger.
const OVERDUE_ISSUES_SHOWN: i32 = 20;
/// How many times longer than a dashboard its issue statistics are held
/// while the community's feeds count no change.
const STATISTICS_HELD_LONGER: u32 = 6;

/// How a dashboard is assembled: `Fresh` reads every part now; `Held` (for
/// the dashboards the gateway holds) may take a part that changes only with
/// the community's events from a hold of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assembly {
    Fresh,
    Held,
}

/// The hold for dashboards' issue statistics, from the dashboards' own.
/// Twelve weeks of counts and percentiles change only with the community's
/// events, which its feeds count, and with the turn of a week: while nothing
/// is counted they are held six times as long as the dashboard (a minute by
/// default), so a quiet dashboard assembled again reads them once a minute,
/// not every ten seconds. After any change, or the caller's own write, they
/// are read again at once; an older answer is never served meanwhile.
pub(crate) fn statistics_hold(dashboards: CacheSettings) -> CacheSettings {
    CacheSettings {
        quiet_for: dashboards.quiet_for * STATISTICS_HELD_LONGER,
        stale_for: dashboards.max_age,
        ..dashboards
    }
}

impl ViewsApi {
    /// A community's dashboard, every part asked for at once.
    pub(super) async fn dashboard(
        &self,
        actor: Actor,
        community_id: String,
        assembly: Assembly,
    ) -> Result<pb::GetCommunityDashboardResponse, Status> {
        let as_of = linli_core::time::now_micros();
        let c = || community_id.clone();
        let a = &actor;
        // The roster's next 24 whole hours, from the start of this one.
        let hour = 3_600_000_000;
        let this_hour = as_of.div_euclid(hour) * hour;
        let (
            people,
            compliance,
            attendance,
            issues,
            stats,
            overdue,
            open,
            logistics,
            report,
            stock,
            roster,
            checkpoints,
        ) = tokio::join!(
            self.part("people.summary", async {
                self.people()
                    .get_community_summary(
                        self.req(a, ppb::GetCommunitySummaryRequest { community_id: c() }),
                    )
                    .await
            }),
            self.part("people.visit_compliance", async {
                self.people()
                    .get_compliance_report(self.req(
                        a,
                        ppb::GetComplianceReportRequest {
                            community_id: c(),
                            as_of: None,
                            overdue_only: true,
                        },
                    ))
                    .await
            }),
            self.part("people.attendance", async {
                self.people()
                    .get_attendance_report(self.req(
                        a,
                        ppb::GetAttendanceReportRequest {
                            community_id: c(),
                            ..Default::default()
                        },
                    ))
                    .await
            }),
            self.part("issues.summary", async {
                self.issues()
                    .get_community_summary(
                        self.req(a, ipb::GetCommunitySummaryRequest { community_id: c() }),
                    )
                    .await
            }),
            self.part(
                "issues.statistics",
                self.statistics(a, &community_id, as_of, assembly)
            ),
            self.part("issues.overdue", async {
                self.issues()
                    .list_overdue_issues(self.req(
                        a,
                        ipb::ListOverdueIssuesRequest {
                            community_id: c(),
                            as_of: None,
                            limit: OVERDUE_ISSUES_SHOWN,
                        },
                    ))
                    .await
            }),
            self.part("issues.open", async {
                self.issues()
                    .list_issues(self.req(
                        a,
                        ipb::ListIssuesRequest {
                            community_id: c(),
                            open_only: true,
                            page_size: OPEN_ISSUES_SHOWN,
                            // The newest, however many are open.
                            newest_first: true,
                            ..Default::default()
                        },
                    ))
                    .await
            }),
            self.part("logistics.summary", async {
                self.logistics()
                    .get_community_summary(
                        self.req(a, lpb::GetCommunitySummaryRequest { community_id: c() }),
                    )
                    .await
            }),
            self.part("logistics.report", async {
                self.logistics()
                    .get_community_report(self.req(
                        a,
                        lpb::GetCommunityReportRequest {
                            community_id: c(),
                            ..Default::default()
                        },
                    ))
                    .await
            }),
            self.part("logistics.stock", self.stock(a, &community_id)),
            self.part("logistics.roster", async {
                self.logistics()
                    .get_roster_report(self.req(
                        a,
                        lpb::GetRosterReportRequest {
                            community_id: c(),
                            from: Some(linli_core::time::to_timestamp(this_hour)),
                            to: Some(linli_core::time::to_timestamp(this_hour + 24 * hour)),
                        },
                    ))
                    .await
            }),
            self.part("logistics.checkpoints", async {
                self.logistics()
                    .list_checkpoints(
                        self.req(a, lpb::ListCheckpointsRequest { community_id: c() }),
                    )
                    .await
            }),
        );
        // The community itself is people's: if people says there is none, there is none.
        if let Err(m) = &people
            && m.code == "NOT_FOUND"
        {
            return Err(Error::not_found("community", &community_id).into());
        }
        let mut gaps = Vec::new();
        let people = take(&mut gaps, people);
        let resp = pb::GetCommunityDashboardResponse {
            community_name: people
                .as_ref()
                .and_then(|p| p.community.as_ref())
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            community_id,
            people,
            visit_compliance: take(&mut gaps, compliance),
            attendance: take(&mut gaps, attendance),
            issues: take(&mut gaps, issues),
            issue_statistics: take(&mut gaps, stats),
            overdue_issues: take(&mut gaps, overdue)
                .map(|o| o.issues)
                .unwrap_or_default(),
            logistics: take(&mut gaps, logistics),
            logistics_report: take(&mut gaps, report),
            stock: take(&mut gaps, stock).unwrap_or_default(),
            roster_next_24h: take(&mut gaps, roster),
            checkpoints: take(&mut gaps, checkpoints)
                .map(|c| c.checkpoints)
                .unwrap_or_default(),
            open_issues: take(&mut gaps, open).map(|o| o.issues).unwrap_or_default(),
            missing: gaps,
            as_of: Some(linli_core::time::to_timestamp(as_of)),
        };
        Ok(resp)
    }

    /// A dashboard's issue statistics: the twelve weeks up to `as_of`, read
    /// now, or held (see [`statistics_hold`]).
    async fn statistics(
        &self,
        actor: &Actor,
        community_id: &str,
        as_of: linli_core::time::Micros,
        assembly: Assembly,
    ) -> Result<Response<ipb::GetStatisticsResponse>, Status> {
        let req = self.req(
            actor,
            ipb::GetStatisticsRequest {
                community_id: community_id.to_owned(),
                from: Some(linli_core::time::to_timestamp(
                    as_of - STATISTICS_WEEKS * WEEK_MICROS,
                )),
                weeks: DASHBOARD_WEEKS,
                ..Default::default()
            },
        );
        let mut client = self.issues();
        if assembly == Assembly::Fresh {
            return client.get_statistics(req).await;
        }
        let held = self
            .statistics
            .get(
                format!("{community_id}/{:?}", actor.role),
                self.wrote_at(actor),
                self.changes.of(community_id),
                |_| true,
                move || async move { client.get_statistics(req).await.map(Response::into_inner) },
            )
            .await?;
        Ok(Response::new(held.as_ref().clone()))
    }

    /// Stock at each of a community's depots.
    async fn stock(
        &self,
        actor: &Actor,
        community_id: &str,
    ) -> Result<Response<Vec<lpb::StockLevel>>, Status> {
        let depots = self
            .logistics()
            .list_depots(self.req(
                actor,
                lpb::ListDepotsRequest {
                    community_id: community_id.to_owned(),
                    page_size: 100,
                    page_token: String::new(),
                },
            ))
            .await?
            .into_inner()
            .depots;
        let levels = futures_util::future::try_join_all(depots.iter().map(|d| {
            let mut client = self.logistics();
            let req = self.req(
                actor,
                lpb::GetStockRequest {
                    depot_id: d.id.clone(),
                },
            );
            async move { client.get_stock(req).await.map(|r| r.into_inner().levels) }
        }))
        .await?;
        Ok(Response::new(levels.into_iter().flatten().collect()))
    }
}
