//! Who may call what in the logistics service: one row per RPC. The handler in
//! `api.rs` asks this table first (wrong role: PERMISSION_DENIED), then
//! keeps the caller to the reach named here (a record out of reach: NOT_FOUND).
use linli_core::Role::{self, Admin, Cadre, CommunityWorker, Resident};
use linli_core::policy::Reach::{Community, County, Household, Own};
use linli_core::policy::roles::{ADMIN, EVERYONE, MANAGERS, OVERSIGHT, STAFF, WORKERS};
use linli_core::policy::{Policy, Rule};

/// Who may read the community's money: the ledger, its balance, and the funds
/// figures in the summary and the report (absent there for everyone else).
pub const FUNDS_READERS: &[Role] = OVERSIGHT;

/// A group purchase's orders come from households; workers and cadres may enter them.
const BUYERS: &[Role] = &[Admin, CommunityWorker, Cadre, Resident];

pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    rules: &[
        // The item catalogue is county-wide.
        Rule::new("CreateItem", ADMIN, County),
        Rule::new("ListItems", EVERYONE, County),
        // Depots and stock.
        Rule::new("CreateDepot", MANAGERS, Community),
        Rule::new("ListDepots", STAFF, Community),
        Rule::new("RecordStockMovement", MANAGERS, Community),
        Rule::new("AllocateStock", MANAGERS, Community),
        Rule::new("GetStock", STAFF, Community),
        Rule::new("ListStockMovements", STAFF, Community),
        // Group purchases (团购): households order for themselves.
        Rule::new("OpenGroupPurchase", MANAGERS, Community),
        Rule::new("PlaceOrder", BUYERS, Household),
        Rule::new("CloseGroupPurchase", MANAGERS, Community),
        Rule::new("GetGroupPurchase", STAFF, Community),
        // Batches and deliveries: cadres record their own deliveries.
        Rule::new("PlanBatch", MANAGERS, Community),
        Rule::new("AssignDeliveries", MANAGERS, Community),
        Rule::new("RecordDeliveryOutcome", WORKERS, Own),
        Rule::new("GetBatchProgress", STAFF, Community),
        Rule::new("ListBatches", STAFF, Community),
        Rule::new("ListDeliveries", STAFF, Community),
        Rule::new("CreateRecurringDelivery", MANAGERS, Community),
        Rule::new("RunSchedules", ADMIN, County),
        // Checkpoints and rosters: cadres check in and out of their own shifts.
        Rule::new("CreateCheckpoint", MANAGERS, Community),
        Rule::new("ListCheckpoints", STAFF, Community),
        Rule::new("AssignShift", MANAGERS, Community),
        Rule::new("CancelShift", MANAGERS, Community),
        Rule::new("CheckInShift", WORKERS, Own),
        Rule::new("CheckOutShift", WORKERS, Own),
        Rule::new("ListShifts", STAFF, Own),
        Rule::new("GetRosterReport", STAFF, Community),
        Rule::new("LogCheckpointEntry", WORKERS, Community),
        Rule::new("ListCheckpointLog", STAFF, Community),
        // Funds: the community's managers book; oversight reads.
        Rule::new("RecordFundsEntry", MANAGERS, Community),
        Rule::new("ReverseFundsEntry", MANAGERS, Community),
        Rule::new("ListFundsEntries", FUNDS_READERS, Community),
        Rule::new("GetFundsBalance", FUNDS_READERS, Community),
        Rule::new("GetCommunityReport", STAFF, Community),
        Rule::new("GetCommunitySummary", STAFF, Community),
        Rule::new("WatchLogistics", STAFF, Community),
        Rule::new("ListAuditEvents", OVERSIGHT, Community),
        Rule::new("VerifyAuditTrail", OVERSIGHT, Community),
    ],
};

linli_core::policy_tests!();
