//! Who may call the gateway's own views: one row per RPC, as in every
//! service. The views then call the services with the caller's own token, so
//! each part is also authorized where its records live; a part the caller may
//! not see comes back listed in `missing` as PERMISSION_DENIED.
//!
//! `AuthService` is open (it is how a caller gets a token), and the domain
//! services' APIs forwarded by the gateway are authorized by those services.
use linli_core::policy::Reach::{Community, CountyWide, Household};
use linli_core::policy::roles::{EVERYONE, OVERSIGHT, STAFF};
use linli_core::policy::{Policy, Rule};

pub static POLICY: Policy = Policy {
    service: crate::SERVICE_NAME,
    rules: &[
        Rule::new("GetCommunityDashboard", STAFF, Community),
        Rule::new("GetHouseholdProfile", EVERYONE, Household),
        Rule::new("GetCountyOverview", OVERSIGHT, CountyWide),
        Rule::new("WatchCommunity", STAFF, Community),
    ],
};

linli_core::policy_tests!();
