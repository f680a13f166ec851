//! Who may call what in the logistics service: one row per RPC. The handler in
//! `service.rs` asks this table first (wrong role: PERMISSION_DENIED), then
//! keeps the caller to the reach named here (a record out of reach: NOT_FOUND).
use linli_core::Role::{self, Admin, Cadre, CommunityWorker, Resident};
use linli_core::policy::Reach::{self, Community, County, Household, Own};
use linli_core::policy::roles::{ADMIN, EVERYONE, MANAGERS, OVERSIGHT, STAFF, WORKERS};
use linli_core::policy::{Policy, Rule};

const fn rule(rpc: &'static str, roles: &'static [Role], reach: Reach) -> Rule {
    Rule { rpc, roles, reach }
}

/// A group purchase's orders come from households; workers and cadres may enter them.
const BUYERS: &[Role] = &[Admin, CommunityWorker, Cadre, Resident];

pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    rules: &[
        // The item catalogue is county-wide.
        rule("CreateItem", ADMIN, County),
        rule("ListItems", EVERYONE, County),
        // Depots and stock.
        rule("CreateDepot", MANAGERS, Community),
        rule("ListDepots", STAFF, Community),
        rule("RecordStockMovement", MANAGERS, Community),
        rule("AllocateStock", MANAGERS, Community),
        rule("GetStock", STAFF, Community),
        rule("ListStockMovements", STAFF, Community),
        // Group purchases (团购): households order for themselves.
        rule("OpenGroupPurchase", MANAGERS, Community),
        rule("PlaceOrder", BUYERS, Household),
        rule("CloseGroupPurchase", MANAGERS, Community),
        rule("GetGroupPurchase", STAFF, Community),
        // Batches and deliveries: cadres record their own deliveries.
        rule("PlanBatch", MANAGERS, Community),
        rule("AssignDeliveries", MANAGERS, Community),
        rule("RecordDeliveryOutcome", WORKERS, Own),
        rule("GetBatchProgress", STAFF, Community),
        rule("ListBatches", STAFF, Community),
        rule("ListDeliveries", STAFF, Community),
        rule("CreateRecurringDelivery", MANAGERS, Community),
        rule("RunSchedules", ADMIN, County),
        // Checkpoints and rosters: cadres check in and out of their own shifts.
        rule("CreateCheckpoint", MANAGERS, Community),
        rule("ListCheckpoints", STAFF, Community),
        rule("AssignShift", MANAGERS, Community),
        rule("CancelShift", MANAGERS, Community),
        rule("CheckInShift", WORKERS, Own),
        rule("CheckOutShift", WORKERS, Own),
        rule("ListShifts", STAFF, Own),
        rule("GetRosterReport", STAFF, Community),
        rule("LogCheckpointEntry", WORKERS, Community),
        rule("ListCheckpointLog", STAFF, Community),
        // Funds: the community's managers book; oversight reads.
        rule("RecordFundsEntry", MANAGERS, Community),
        rule("ReverseFundsEntry", MANAGERS, Community),
        rule("ListFundsEntries", OVERSIGHT, Community),
        rule("GetFundsBalance", OVERSIGHT, Community),
        rule("GetCommunityReport", STAFF, Community),
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
