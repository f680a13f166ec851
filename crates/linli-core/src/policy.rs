//! Who may call what. Each service declares one table, RPC → roles → reach,
//! in its `policy.rs`; every handler starts by asking it. The roles column is
//! checked here (PERMISSION_DENIED); the reach column says which records the
//! handler then lets the caller touch, checked next to the records with
//! [`Actor::check_community`] and friends (a record out of reach is NOT_FOUND).
use prost::Message;
use tonic::Request;

use crate::{Actor, Error, Result, Role};

/// Which records of an RPC a caller may touch once their role is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// County-wide reference data (places, units, cadres, the item catalogue):
    /// the same for every caller the roles column admits.
    County,
    /// Records of the caller's own communities (all, for county-wide callers).
    Community,
    /// As `Community`, and a resident only their own household's.
    Household,
    /// As `Community`, and a cadre only their own (registration, check-ins, shifts).
    Own,
    /// Figures across communities (rankings): only for callers whose scope is the
    /// whole county; a caller limited to some communities is PERMISSION_DENIED.
    CountyWide,
}

impl Reach {
    pub fn describe(self) -> &'static str {
        match self {
            Reach::County => "county",
            Reach::Community => "own community",
            Reach::Household => "own community; residents: own household",
            Reach::Own => "own community; cadres: own records",
            Reach::CountyWide => "county-wide callers only",
        }
    }
}

/// One row of a service's table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub rpc: &'static str,
    pub roles: &'static [Role],
    pub reach: Reach,
}

impl Rule {
    pub const fn new(rpc: &'static str, roles: &'static [Role], reach: Reach) -> Rule {
        Rule { rpc, roles, reach }
    }
}

/// Role sets the tables are written with.
pub mod roles {
    use crate::Role::{self, *};
    pub const EVERYONE: &[Role] = &[Admin, Supervisor, CommunityWorker, Cadre, Resident];
    /// Everyone who works for the community (not residents).
    pub const STAFF: &[Role] = &[Admin, Supervisor, CommunityWorker, Cadre];
    /// Those who run a community: they change what staff read.
    pub const MANAGERS: &[Role] = &[Admin, CommunityWorker];
    /// Managers and the cadres doing the work.
    pub const WORKERS: &[Role] = &[Admin, CommunityWorker, Cadre];
    /// Readers of oversight data: audit trails, reports across communities.
    pub const OVERSIGHT: &[Role] = &[Admin, Supervisor, CommunityWorker];
    pub const ADMIN: &[Role] = &[Admin];
}

/// A service's table.
#[derive(Debug)]
pub struct Policy {
    /// The gRPC service's full name, e.g. `linli.people.v1.PeopleService`.
    pub service: &'static str,
    pub rules: &'static [Rule],
}

impl Policy {
    pub fn rule(&self, rpc: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.rpc == rpc)
    }

    /// The verified caller of `req`, if their role may call `rpc`.
    pub fn allow<T>(&self, rpc: &str, req: &Request<T>) -> Result<Actor> {
        let actor = Actor::of(req)?;
        self.check(rpc, &actor)?;
        Ok(actor)
    }

    pub fn check(&self, rpc: &str, actor: &Actor) -> Result<()> {
        let Some(rule) = self.rule(rpc) else {
            // A missing row is a programming error; refuse rather than allow.
            tracing::error!(rpc, service = self.service, "no policy row");
            return Err(Error::PermissionDenied(format!("{rpc} has no policy")));
        };
        if !actor.is(rule.roles) {
            Err(Error::PermissionDenied(format!(
                "the {} role may not call {rpc}",
                actor.role
            )))
        } else if rule.reach == Reach::CountyWide && !actor.is_county() {
            Err(Error::PermissionDenied(format!(
                "{rpc} compares communities: it is for county-wide callers"
            )))
        } else {
            Ok(())
        }
    }

    /// The RPCs the service's proto declares that have no row, and rows no RPC has.
    pub fn mismatches(&self) -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(linli_proto::FILE_DESCRIPTOR_SET)
            .expect("linli's descriptor set decodes");
        let (package, name) = self.service.rsplit_once('.').expect("a full service name");
        let methods: Vec<String> = set
            .file
            .iter()
            .filter(|f| f.package() == package)
            .flat_map(|f| f.service.iter())
            .filter(|s| s.name() == name)
            .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
            .collect();
        let mut out: Vec<String> = methods
            .iter()
            .filter(|m| self.rule(m).is_none())
            .map(|m| format!("no row for {m}"))
            .collect();
        out.extend(
            self.rules
                .iter()
                .filter(|r| !methods.iter().any(|m| m == r.rpc))
                .map(|r| format!("row for unknown RPC {}", r.rpc)),
        );
        out
    }

    /// Panics, naming them, if rows and the proto's RPCs do not match one to one.
    pub fn assert_complete(&self) {
        assert_eq!(self.mismatches(), Vec::<String>::new(), "{}", self.service);
    }

    /// The table as Markdown, for the README.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| RPC | roles | reach |\n|---|---|---|\n");
        for r in self.rules {
            let roles: Vec<&str> = r.roles.iter().map(|r| r.as_str()).collect();
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                r.rpc,
                roles.join(", "),
                r.reach.describe()
            ));
        }
        out
    }
}

/// Checks that `path` (Markdown) holds `policy`'s table under a heading naming
/// its service; with `LINLI_BLESS=1` set, writes that section instead.
pub fn check_published(policy: &Policy, path: &str) {
    let heading = format!("## `{}`\n\n", policy.service);
    let section = format!("{heading}{}", policy.markdown());
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.find(&heading);
    if std::env::var_os("LINLI_BLESS").is_some() {
        let updated = match start {
            Some(i) => {
                let end = text[i + heading.len()..]
                    .find("\n## ")
                    .map_or(text.len(), |j| i + heading.len() + j + 1);
                format!("{}{section}{}", &text[..i], &text[end..])
            }
            None => format!("{text}\n{section}"),
        };
        std::fs::write(path, updated).expect("write the policy document");
        return;
    }
    assert!(
        text.contains(&section),
        "{path} does not show the current {} policy; run the tests with LINLI_BLESS=1 and commit it",
        policy.service
    );
}

/// The tests every service's table has: one row per RPC of its proto, and
/// docs/POLICY.md showing it as it is (`LINLI_BLESS=1` rewrites its section).
/// Invoke in the service's `policy.rs`, next to `POLICY`.
#[macro_export]
macro_rules! policy_tests {
    () => {
        #[cfg(test)]
        mod tests {
            #[test]
            fn every_rpc_has_exactly_one_row() {
                super::POLICY.assert_complete();
            }

            #[test]
            fn the_published_table_is_current() {
                $crate::policy::check_published(
                    &super::POLICY,
                    concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/POLICY.md"),
                );
            }
        }
    };
}
