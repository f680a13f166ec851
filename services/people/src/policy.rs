//! Who may call what in the people service: one row per RPC. The handler in
//! `api.rs` asks this table first (wrong role: PERMISSION_DENIED), then keeps
//! the caller to the reach named here (a record out of reach: NOT_FOUND).
use linli_core::policy::Reach::{Community, County, CountyWide, Household, Own};
use linli_core::policy::roles::{ADMIN, EVERYONE, MANAGERS, OVERSIGHT, STAFF, WORKERS};
use linli_core::policy::{Policy, Rule};

pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    rules: &[
        // Places: names of the place tree are public within the county; workers
        // add compounds and buildings under their own community.
        Rule::new("CreatePlace", MANAGERS, Community),
        Rule::new("GetPlace", EVERYONE, County),
        Rule::new("ListPlaces", EVERYONE, County),
        // Households and residents.
        Rule::new("CreateHousehold", MANAGERS, Community),
        Rule::new("GetHousehold", EVERYONE, Household),
        Rule::new("ListHouseholds", STAFF, Community),
        Rule::new("AddResident", MANAGERS, Community),
        Rule::new("GetResident", EVERYONE, Household),
        Rule::new("ListResidents", EVERYONE, Household),
        Rule::new("UpdateResident", MANAGERS, Community),
        Rule::new("RemoveResident", MANAGERS, Community),
        // Units and cadres are county-wide.
        Rule::new("CreateUnit", ADMIN, County),
        Rule::new("GetUnit", STAFF, County),
        Rule::new("ListUnits", STAFF, County),
        Rule::new("CreateCadre", MANAGERS, County),
        Rule::new("GetCadre", STAFF, County),
        Rule::new("ListCadres", STAFF, County),
        // Dual registration: a cadre asks for themselves; the community approves.
        Rule::new("RequestRegistration", WORKERS, Own),
        Rule::new("ApproveRegistration", MANAGERS, Community),
        Rule::new("EndRegistration", MANAGERS, Community),
        Rule::new("ListRegistrations", STAFF, Community),
        Rule::new("CheckRegistration", STAFF, Community),
        // Pairings (包户).
        Rule::new("PairHousehold", MANAGERS, Community),
        Rule::new("EndPairing", MANAGERS, Community),
        Rule::new("ListPairings", STAFF, Community),
        Rule::new("GetCoverageReport", STAFF, Community),
        // On-site duty and visits: a cadre records their own.
        Rule::new("CheckIn", WORKERS, Own),
        Rule::new("ListCheckIns", STAFF, Community),
        Rule::new("GetAttendanceReport", STAFF, Community),
        Rule::new("LogVisit", WORKERS, Own),
        Rule::new("ListVisits", STAFF, Community),
        Rule::new("GetComplianceReport", STAFF, Community),
        // Accounts: workers make cadre and resident accounts in their community.
        Rule::new("CreateAccount", MANAGERS, Community),
        Rule::new("GetAccount", OVERSIGHT, Community),
        Rule::new("ListAccounts", OVERSIGHT, Community),
        // Only the gateway (signing as a service) checks passwords.
        Rule::new("VerifyPassword", ADMIN, County),
        // Stopping accounts and resetting passwords: workers, for the accounts they may make.
        Rule::new("DisableAccount", MANAGERS, Community),
        Rule::new("EnableAccount", MANAGERS, Community),
        Rule::new("ResetPassword", MANAGERS, Community),
        // A holder changes their password and logs out through the gateway
        // (AuthService), which calls these as itself.
        Rule::new("ChangePassword", ADMIN, CountyWide),
        Rule::new("EndSession", ADMIN, CountyWide),
        // What ended, for the services (signing as themselves) to refuse old tokens.
        Rule::new("ListEndedSessions", ADMIN, CountyWide),
        Rule::new("GetCommunitySummary", STAFF, Community),
        Rule::new("ListAuditEvents", OVERSIGHT, Community),
        Rule::new("VerifyAuditTrail", OVERSIGHT, Community),
    ],
};

linli_core::policy_tests!();
