//! Who may call what in the issues service: one row per RPC. The handler in
//! `service.rs` asks this table first (wrong role: PERMISSION_DENIED), then
//! keeps the caller to the reach named here (a record out of reach: NOT_FOUND).
use linli_core::Role::{self, Admin, CommunityWorker, Resident, Supervisor};
use linli_core::policy::Reach::{Community, County, CountyWide, Household, Own};
use linli_core::policy::roles::{ADMIN, EVERYONE, MANAGERS, OVERSIGHT, STAFF, WORKERS};
use linli_core::policy::{Policy, Rule};

/// Residents confirm or reopen their own household's issue; workers may record it for them.
const CONFIRMERS: &[Role] = &[Admin, CommunityWorker, Resident];
/// Supervision notes (督办) are the supervisors'.
const SUPERVISORS: &[Role] = &[Admin, Supervisor];

pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    rules: &[
        // Intake: anyone in the community reports; residents for their own household.
        Rule::new("ReportIssue", EVERYONE, Household),
        Rule::new("GetIssue", EVERYONE, Household),
        Rule::new("ListIssues", EVERYONE, Household),
        Rule::new("GetTimeline", EVERYONE, Household),
        // Lifecycle: the community runs it, cadres claim and fix (as themselves).
        Rule::new("AcknowledgeIssue", MANAGERS, Community),
        Rule::new("ClaimIssue", WORKERS, Own),
        Rule::new("UnclaimIssue", WORKERS, Own),
        Rule::new("ReassignIssue", MANAGERS, Community),
        Rule::new("StartWork", WORKERS, Community),
        Rule::new("ResolveIssue", WORKERS, Community),
        Rule::new("ConfirmResolution", CONFIRMERS, Household),
        Rule::new("ReopenIssue", CONFIRMERS, Household),
        Rule::new("RejectIssue", MANAGERS, Community),
        Rule::new("MarkDuplicate", MANAGERS, Community),
        // Supervision.
        Rule::new("AddSupervisionNote", SUPERVISORS, Community),
        Rule::new("ListOverdueIssues", STAFF, Community),
        Rule::new("RunSupervision", ADMIN, County),
        // Statistics: a community's own for its staff; the ranking across
        // communities for county roles only.
        Rule::new("GetStatistics", STAFF, Community),
        Rule::new("GetRanking", SUPERVISORS, CountyWide),
        Rule::new("WatchIssues", STAFF, Community),
        Rule::new("GetCommunitySummary", STAFF, Community),
        Rule::new("ListAuditEvents", OVERSIGHT, Community),
        Rule::new("VerifyAuditTrail", OVERSIGHT, Community),
    ],
};

linli_core::policy_tests!();
