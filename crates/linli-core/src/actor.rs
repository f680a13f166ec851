//! Who is calling. Every request to a service carries a token the gateway (or
//! a service, for its own jobs) signed; the interceptor in [`crate::auth`]
//! verifies it once and puts the [`Actor`] into the request's extensions, and
//! handlers ask it what the caller may see. The audit trail names the actor.
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use linli_proto::people::v1::AccountRole;
use tonic::Request;
use tonic::metadata::MetadataMap;

use crate::auth::Claims;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admin,
    Supervisor,
    CommunityWorker,
    Cadre,
    Resident,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Supervisor,
        Role::CommunityWorker,
        Role::Cadre,
        Role::Resident,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::CommunityWorker => "community_worker",
            Role::Cadre => "cadre",
            Role::Resident => "resident",
        }
    }

    /// The wire value (`linli.people.v1.AccountRole`).
    pub fn to_proto(self) -> i32 {
        let role = match self {
            Role::Admin => AccountRole::Admin,
            Role::Supervisor => AccountRole::Supervisor,
            Role::CommunityWorker => AccountRole::CommunityWorker,
            Role::Cadre => AccountRole::Cadre,
            Role::Resident => AccountRole::Resident,
        };
        role as i32
    }

    /// `None` for 0 (unspecified) and numbers the proto does not define.
    pub fn from_proto(n: i32) -> Option<Role> {
        match AccountRole::try_from(n).ok()? {
            AccountRole::Unspecified => None,
            AccountRole::Admin => Some(Role::Admin),
            AccountRole::Supervisor => Some(Role::Supervisor),
            AccountRole::CommunityWorker => Some(Role::CommunityWorker),
            AccountRole::Cadre => Some(Role::Cadre),
            AccountRole::Resident => Some(Role::Resident),
        }
    }

    /// Roles that may read residents' phone and ID numbers in full.
    pub fn sees_personal_data(self) -> bool {
        matches!(self, Role::Admin | Role::CommunityWorker)
    }

    /// How far up the ladder a role stands; nobody makes an account above their own.
    pub fn rank(self) -> u8 {
        match self {
            Role::Admin => 4,
            Role::Supervisor | Role::CommunityWorker => 3,
            Role::Cadre => 2,
            Role::Resident => 1,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::Unauthenticated(format!("unknown role {s:?}")))
    }
}

/// Which communities' records a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every community: admins, county supervisors, services' own jobs.
    County,
    /// Only these.
    Communities(Vec<String>),
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Who, for the audit trail: `account:<id>`, `service:<name>`, or a tool's name.
    pub id: String,
    pub role: Role,
    pub scope: Scope,
    /// A resident's own household.
    pub household: Option<String>,
    /// A cadre's own cadre record.
    pub cadre: Option<String>,
    /// The verified token, forwarded when this request calls another service.
    token: Option<Arc<str>>,
}

impl Actor {
    pub(crate) fn verified(claims: &Claims, token: &str) -> Actor {
        Actor {
            id: claims.sub.clone(),
            role: claims.role,
            scope: if claims.county {
                Scope::County
            } else {
                Scope::Communities(claims.communities.clone())
            },
            household: claims.household.clone(),
            cadre: claims.cadre.clone(),
            token: Some(token.into()),
        }
    }

    /// An operator's tool working on its own database (import, seed): county-wide,
    /// named `id` in the audit trail, with no token, so it cannot call other services.
    pub fn local(id: impl Into<String>) -> Actor {
        Actor {
            id: id.into(),
            role: Role::Admin,
            scope: Scope::County,
            household: None,
            cadre: None,
            token: None,
        }
    }

    /// The caller the authentication interceptor put on the request.
    pub fn of<T>(req: &Request<T>) -> Result<Actor> {
        req.extensions().get::<Actor>().cloned().ok_or_else(|| {
            Error::Unauthenticated("the request carries no verified identity".into())
        })
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Writes this identity into outgoing metadata, for calls to another service.
    pub fn to_metadata(&self, md: &mut MetadataMap) {
        if let Some(token) = &self.token {
            crate::auth::set_bearer(md, token);
        }
    }

    /// An outgoing request to another service on this actor's behalf, with trace context.
    pub fn request<M>(&self, msg: M) -> Request<M> {
        let mut req = Request::new(msg);
        self.to_metadata(req.metadata_mut());
        crate::telemetry::inject_context(req.metadata_mut());
        req
    }

    pub fn is(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role)
    }

    pub fn sees_community(&self, community_id: &str) -> bool {
        match &self.scope {
            Scope::County => true,
            Scope::Communities(own) => own.iter().any(|c| c == community_id),
        }
    }

    /// A record in `community_id` is NOT_FOUND to a caller outside it: no hint that it exists.
    pub fn check_community(&self, what: &'static str, id: &str, community_id: &str) -> Result<()> {
        if self.sees_community(community_id) {
            Ok(())
        } else {
            Err(Error::not_found(what, id))
        }
    }

    /// A community named in a request: NOT_FOUND when outside the caller's scope.
    pub fn check_community_id(&self, community_id: &str) -> Result<()> {
        self.check_community("community", community_id, community_id)
    }

    /// The community a list or report is for: the one asked for if the caller may
    /// see it (else NOT_FOUND); when none is named, the caller's only community, or
    /// "" (every community) for a county-wide caller.
    pub fn community_filter(&self, field: &str, asked: &str) -> Result<String> {
        match (asked, &self.scope) {
            ("", Scope::County) => Ok(String::new()),
            ("", Scope::Communities(own)) if own.len() == 1 => Ok(own[0].clone()),
            ("", Scope::Communities(_)) => Err(Error::required(field)),
            (id, _) => {
                let id = crate::validate::parse_id(field, id)?;
                self.check_community_id(&id)?;
                Ok(id)
            }
        }
    }

    /// The one community a per-community list or report is about: the one
    /// asked for, if the caller may see it; when none is asked, the caller's
    /// own. A county-wide caller (or one of several communities) names it.
    /// Lists that can span communities (issues, accounts) use
    /// [`Actor::community_filter`] instead, where empty means all in reach.
    pub fn community_or_own(&self, field: &str, asked: &str) -> Result<String> {
        match (asked.trim(), &self.scope) {
            ("", Scope::Communities(own)) if own.len() == 1 => Ok(own[0].clone()),
            ("", _) => Err(Error::invalid(
                field,
                "is required for a caller who acts in more than one community",
            )),
            (id, _) => {
                let id = crate::validate::parse_id(field, id)?;
                self.check_community_id(&id)?;
                Ok(id)
            }
        }
    }

    /// A county-wide record (units, cadres, the county audit chain) is for county roles;
    /// everyone else is limited to their communities.
    pub fn is_county(&self) -> bool {
        self.scope == Scope::County
    }

    /// A resident sees only their own household.
    pub fn check_household(&self, id: &str) -> Result<()> {
        match (self.role, &self.household) {
            (Role::Resident, Some(own)) if own == id => Ok(()),
            (Role::Resident, _) => Err(Error::not_found("household", id)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_cross_the_wire_by_name_not_position() {
        for role in Role::ALL {
            assert_eq!(Role::from_proto(role.to_proto()), Some(role));
            let pb = AccountRole::try_from(role.to_proto()).unwrap();
            assert_eq!(
                pb.as_str_name(),
                format!("ACCOUNT_ROLE_{}", role.as_str().to_uppercase())
            );
        }
        assert_eq!(Role::from_proto(0), None);
        assert_eq!(Role::from_proto(99), None);
    }

    #[test]
    fn scope_hides_other_communities() {
        let mut a = Actor::local("t");
        a.role = Role::CommunityWorker;
        a.scope = Scope::Communities(vec!["c1".into()]);
        assert!(a.check_community("household", "h", "c1").is_ok());
        assert!(matches!(
            a.check_community("household", "h", "c2"),
            Err(Error::NotFound { .. })
        ));
        assert!(Actor::local("seed").sees_community("anything"));
    }

    #[test]
    fn a_list_without_a_community_is_about_the_callers_own() {
        let own = "0190c0de-0000-7000-8000-000000000001";
        let other = "0190c0de-0000-7000-8000-000000000002";
        let mut worker = Actor::local("t");
        worker.role = Role::CommunityWorker;
        worker.scope = Scope::Communities(vec![own.into()]);
        assert_eq!(worker.community_or_own("community_id", "").unwrap(), own);
        assert_eq!(worker.community_or_own("community_id", own).unwrap(), own);
        assert!(matches!(
            worker.community_or_own("community_id", other),
            Err(Error::NotFound { .. })
        ));
        let county = Actor::local("admin");
        assert_eq!(
            county.community_or_own("community_id", other).unwrap(),
            other
        );
        let err = county
            .community_or_own("community_id", "")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("community_id:"), "{err}");
    }
}
