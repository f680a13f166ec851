//! The issues service's API as a table: each RPC asks its row of the policy
//! (`policy.rs`) who may call it, then hands the request to its aggregate's
//! module, which validates it (naming the field), keeps the caller to their
//! reach, asks the people service what it must and calls the store.

use tonic::Request;

use linli_proto::issues::v1 as pb;
use linli_proto::issues::v1::issues_service_server::IssuesService;

use crate::policy::POLICY;
use crate::{intake, lifecycle, statistics, supervision, watch};

pub use crate::context::IssuesApi;
use crate::context::*;

#[tonic::async_trait]
impl IssuesService for IssuesApi {
    type WatchIssuesStream = watch::WatchStream;

    async fn report_issue(
        &self,
        req: Request<pb::ReportIssueRequest>,
    ) -> Resp<pb::ReportIssueResponse> {
        let actor = POLICY.allow("ReportIssue", &req)?;
        intake::report_issue(self, &actor, req).await
    }

    async fn get_issue(&self, req: Request<pb::GetIssueRequest>) -> Resp<pb::GetIssueResponse> {
        let actor = POLICY.allow("GetIssue", &req)?;
        intake::get_issue(self, &actor, req).await
    }

    async fn list_issues(
        &self,
        req: Request<pb::ListIssuesRequest>,
    ) -> Resp<pb::ListIssuesResponse> {
        let actor = POLICY.allow("ListIssues", &req)?;
        intake::list_issues(self, &actor, req).await
    }

    async fn acknowledge_issue(
        &self,
        req: Request<pb::AcknowledgeIssueRequest>,
    ) -> Resp<pb::AcknowledgeIssueResponse> {
        let actor = POLICY.allow("AcknowledgeIssue", &req)?;
        lifecycle::acknowledge_issue(self, &actor, req).await
    }

    async fn claim_issue(
        &self,
        req: Request<pb::ClaimIssueRequest>,
    ) -> Resp<pb::ClaimIssueResponse> {
        let actor = POLICY.allow("ClaimIssue", &req)?;
        lifecycle::claim_issue(self, &actor, req).await
    }

    async fn unclaim_issue(
        &self,
        req: Request<pb::UnclaimIssueRequest>,
    ) -> Resp<pb::UnclaimIssueResponse> {
        let actor = POLICY.allow("UnclaimIssue", &req)?;
        lifecycle::unclaim_issue(self, &actor, req).await
    }

    async fn reassign_issue(
        &self,
        req: Request<pb::ReassignIssueRequest>,
    ) -> Resp<pb::ReassignIssueResponse> {
        let actor = POLICY.allow("ReassignIssue", &req)?;
        lifecycle::reassign_issue(self, &actor, req).await
    }

    async fn start_work(&self, req: Request<pb::StartWorkRequest>) -> Resp<pb::StartWorkResponse> {
        let actor = POLICY.allow("StartWork", &req)?;
        lifecycle::start_work(self, &actor, req).await
    }

    async fn resolve_issue(
        &self,
        req: Request<pb::ResolveIssueRequest>,
    ) -> Resp<pb::ResolveIssueResponse> {
        let actor = POLICY.allow("ResolveIssue", &req)?;
        lifecycle::resolve_issue(self, &actor, req).await
    }

    async fn confirm_resolution(
        &self,
        req: Request<pb::ConfirmResolutionRequest>,
    ) -> Resp<pb::ConfirmResolutionResponse> {
        let actor = POLICY.allow("ConfirmResolution", &req)?;
        lifecycle::confirm_resolution(self, &actor, req).await
    }

    async fn reopen_issue(
        &self,
        req: Request<pb::ReopenIssueRequest>,
    ) -> Resp<pb::ReopenIssueResponse> {
        let actor = POLICY.allow("ReopenIssue", &req)?;
        lifecycle::reopen_issue(self, &actor, req).await
    }

    async fn reject_issue(
        &self,
        req: Request<pb::RejectIssueRequest>,
    ) -> Resp<pb::RejectIssueResponse> {
        let actor = POLICY.allow("RejectIssue", &req)?;
        lifecycle::reject_issue(self, &actor, req).await
    }

    async fn mark_duplicate(
        &self,
        req: Request<pb::MarkDuplicateRequest>,
    ) -> Resp<pb::MarkDuplicateResponse> {
        let actor = POLICY.allow("MarkDuplicate", &req)?;
        lifecycle::mark_duplicate(self, &actor, req).await
    }

    async fn add_supervision_note(
        &self,
        req: Request<pb::AddSupervisionNoteRequest>,
    ) -> Resp<pb::AddSupervisionNoteResponse> {
        let actor = POLICY.allow("AddSupervisionNote", &req)?;
        supervision::add_supervision_note(self, &actor, req).await
    }

    async fn list_overdue_issues(
        &self,
        req: Request<pb::ListOverdueIssuesRequest>,
    ) -> Resp<pb::ListOverdueIssuesResponse> {
        let actor = POLICY.allow("ListOverdueIssues", &req)?;
        supervision::list_overdue_issues(self, &actor, req).await
    }

    async fn run_supervision(
        &self,
        req: Request<pb::RunSupervisionRequest>,
    ) -> Resp<pb::RunSupervisionResponse> {
        POLICY.allow("RunSupervision", &req)?;
        supervision::run_supervision(self, req).await
    }

    async fn get_timeline(
        &self,
        req: Request<pb::GetTimelineRequest>,
    ) -> Resp<pb::GetTimelineResponse> {
        let actor = POLICY.allow("GetTimeline", &req)?;
        intake::get_timeline(self, &actor, req).await
    }

    async fn get_statistics(
        &self,
        req: Request<pb::GetStatisticsRequest>,
    ) -> Resp<pb::GetStatisticsResponse> {
        let actor = POLICY.allow("GetStatistics", &req)?;
        statistics::get_statistics(self, &actor, req).await
    }

    async fn get_ranking(
        &self,
        req: Request<pb::GetRankingRequest>,
    ) -> Resp<pb::GetRankingResponse> {
        POLICY.allow("GetRanking", &req)?;
        statistics::get_ranking(self, req).await
    }

    async fn watch_issues(
        &self,
        req: Request<pb::WatchIssuesRequest>,
    ) -> Resp<Self::WatchIssuesStream> {
        let actor = POLICY.allow("WatchIssues", &req)?;
        watch::watch_issues(self, &actor, req).await
    }

    async fn get_community_summary(
        &self,
        req: Request<pb::GetCommunitySummaryRequest>,
    ) -> Resp<pb::GetCommunitySummaryResponse> {
        let actor = POLICY.allow("GetCommunitySummary", &req)?;
        statistics::get_community_summary(self, &actor, req).await
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Resp<pb::ListAuditEventsResponse> {
        let actor = POLICY.allow("ListAuditEvents", &req)?;
        supervision::list_audit_events(self, &actor, req).await
    }

    async fn verify_audit_trail(
        &self,
        req: Request<pb::VerifyAuditTrailRequest>,
    ) -> Resp<pb::VerifyAuditTrailResponse> {
        let actor = POLICY.allow("VerifyAuditTrail", &req)?;
        supervision::verify_audit_trail(self, &actor, req).await
    }
}
