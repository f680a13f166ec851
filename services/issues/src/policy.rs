//! Who may call what in the issues service: one row per RPC. The handler in
//! `service.rs` asks this table first (wrong role: PERMISSION_DENIED), then
//! keeps the caller to the reach named here (a record out of reach: NOT_FOUND).
use linli_core::Role::{self, Admin, CommunityWorker, Resident, Supervisor};
use linli_core::policy::Reach::{self, Community, County, CountyWide, Household, Own};
use linli_core::policy::roles::{ADMIN, EVERYONE, MANAGERS, OVERSIGHT, STAFF, WORKERS};
use linli_core::policy::{Policy, Rule};

const fn rule(rpc: &'static str, roles: &'static [Role], reach: Reach) -> Rule {
    Rule { rpc, roles, reach }
}

/// Residents confirm or reopen their own household's issue; workers may record it for them.
const CONFIRMERS: &[Role] = &[Admin, CommunityWorker, Resident];
/// Supervision notes (督办) are the supervisors'.
const SUPERVISORS: &[Role] = &[Admin, Supervisor];

pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    rules: &[
        // Intake: anyone in the community reports; residents for their own household.
        rule("ReportIssue", EVERYONE, Household),
        rule("GetIssue", EVERYONE, Household),
        rule("ListIssues", EVERYONE, Household),
        rule("GetTimeline", EVERYONE, Household),
        // Lifecycle: the community runs it, cadres claim and fix (as themselves).
        rule("AcknowledgeIssue", MANAGERS, Community),
        rule("ClaimIssue", WORKERS, Own),
        rule("UnclaimIssue", WORKERS, Own),
        rule("ReassignIssue", MANAGERS, Community),
        rule("StartWork", WORKERS, Community),
        rule("ResolveIssue", WORKERS, Community),
        rule("ConfirmResolution", CONFIRMERS, Household),
        rule("ReopenIssue", CONFIRMERS, Household),
        rule("RejectIssue", MANAGERS, Community),
        rule("MarkDuplicate", MANAGERS, Community),
        // Supervision.
        rule("AddSupervisionNote", SUPERVISORS, Community),
        rule("ListOverdueIssues", STAFF, Community),
        rule("RunSupervision", ADMIN, County),
        // Statistics: a community's own for its staff; the ranking across
        // communities for county roles only.
        rule("GetStatistics", STAFF, Community),
        rule("GetRanking", SUPERVISORS, CountyWide),
        rule("WatchIssues", STAFF, Community),
        rule("GetCommunitySummary", STAFF, Community),
        rule("ListAuditEvents", OVERSIGHT, Community),
        rule("VerifyAuditTrail", OVERSIGHT, Community),
    ],
};

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_has_exactly_one_row() {
        assert_eq!(super::POLICY.mismatches(), Vec::<String>::new());
    }
}
