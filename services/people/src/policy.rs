//! Who may call what in the people service: one row per RPC. The handler in
//! `api.rs` asks this table first (wrong role: PERMISSION_DENIED), then keeps
//! the caller to the reach named here (a record out of reach: NOT_FOUND).
use linli_core::Role;
use linli_core::policy::Reach::{Community, County, Household, Own};
use linli_core::policy::roles::{ADMIN, EVERYONE, MANAGERS, OVERSIGHT, STAFF, WORKERS};
use linli_core::policy::{Policy, Rule};

const fn rule(rpc: &'static str, roles: &'static [Role], reach: linli_core::policy::Reach) -> Rule {
    Rule { rpc, roles, reach }
}

pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    rules: &[
        // Places: names of the place tree are public within the county; workers
        // add compounds and buildings under their own community.
        rule("CreatePlace", MANAGERS, Community),
        rule("GetPlace", EVERYONE, County),
        rule("ListPlaces", EVERYONE, County),
        // Households and residents.
        rule("CreateHousehold", MANAGERS, Community),
        rule("GetHousehold", EVERYONE, Household),
        rule("ListHouseholds", STAFF, Community),
        rule("AddResident", MANAGERS, Community),
        rule("GetResident", EVERYONE, Household),
        rule("ListResidents", EVERYONE, Household),
        rule("UpdateResident", MANAGERS, Community),
        rule("RemoveResident", MANAGERS, Community),
        // Units and cadres are county-wide.
        rule("CreateUnit", ADMIN, County),
        rule("GetUnit", STAFF, County),
        rule("ListUnits", STAFF, County),
        rule("CreateCadre", MANAGERS, County),
        rule("GetCadre", STAFF, County),
        rule("ListCadres", STAFF, County),
        // Dual registration: a cadre asks for themselves; the community approves.
        rule("RequestRegistration", WORKERS, Own),
        rule("ApproveRegistration", MANAGERS, Community),
        rule("EndRegistration", MANAGERS, Community),
        rule("ListRegistrations", STAFF, Community),
        rule("CheckRegistration", STAFF, Community),
        // Pairings (包户).
        rule("PairHousehold", MANAGERS, Community),
        rule("EndPairing", MANAGERS, Community),
        rule("ListPairings", STAFF, Community),
        rule("GetCoverageReport", STAFF, Community),
        // On-site duty and visits: a cadre records their own.
        rule("CheckIn", WORKERS, Own),
        rule("ListCheckIns", STAFF, Community),
        rule("GetAttendanceReport", STAFF, Community),
        rule("LogVisit", WORKERS, Own),
        rule("ListVisits", STAFF, Community),
        rule("GetComplianceReport", STAFF, Community),
        // Accounts: workers make cadre and resident accounts in their community.
        rule("CreateAccount", MANAGERS, Community),
        rule("GetAccount", OVERSIGHT, Community),
        rule("ListAccounts", OVERSIGHT, Community),
        // Only the gateway (signing as a service) checks passwords.
        rule("VerifyPassword", ADMIN, County),
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
