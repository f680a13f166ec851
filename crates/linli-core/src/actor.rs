//! Who is calling. The gateway authenticates people and forwards their identity
//! in request metadata; services read it from there, so any replica can serve
//! any request and the audit trail names a person, not a connection.
use std::fmt;
use std::str::FromStr;

use tonic::metadata::MetadataMap;

use crate::{Error, Result};

pub const ACTOR_HEADER: &str = "x-linli-actor";
pub const ROLE_HEADER: &str = "x-linli-role";
pub const COMMUNITY_HEADER: &str = "x-linli-community";

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

    /// The proto enum number (`linli.people.v1.AccountRole`): the variants are listed in its order, from 1.
    pub fn to_proto(self) -> i32 {
        Role::ALL
            .iter()
            .position(|r| *r == self)
            .map_or(0, |i| i as i32 + 1)
    }

    /// `None` for 0 (unspecified) and numbers the proto does not define.
    pub fn from_proto(n: i32) -> Option<Role> {
        usize::try_from(n)
            .ok()?
            .checked_sub(1)
            .and_then(|i| Role::ALL.get(i).copied())
    }

    /// Roles that may read residents' phone and ID numbers in full.
    pub fn sees_personal_data(self) -> bool {
        matches!(self, Role::Admin | Role::CommunityWorker)
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
            .ok_or_else(|| Error::Unauthenticated(format!("unknown role {s:?} in {ROLE_HEADER}")))
    }
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Who, for the audit trail: an account id or username, or `system` for
    /// calls that carry no identity (internal jobs, imports, seeding).
    pub id: String,
    pub role: Option<Role>,
    pub community: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Actor {
            id: "system".into(),
            role: None,
            community: None,
        }
    }

    pub fn from_metadata(md: &MetadataMap) -> Result<Self> {
        let text = |name: &str| -> Result<Option<String>> {
            match md.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
                    .map_err(|_| Error::Unauthenticated(format!("{name} is not valid ASCII"))),
            }
        };
        let role = text(ROLE_HEADER)?.map(|r| r.parse()).transpose()?;
        Ok(Actor {
            id: text(ACTOR_HEADER)?.unwrap_or_else(|| "system".into()),
            role,
            community: text(COMMUNITY_HEADER)?,
        })
    }

    /// Writes this identity into outgoing metadata, for calls to another service.
    pub fn to_metadata(&self, md: &mut MetadataMap) {
        if let Ok(v) = self.id.parse() {
            md.insert(ACTOR_HEADER, v);
        }
        if let Some(role) = self.role {
            md.insert(
                ROLE_HEADER,
                tonic::metadata::MetadataValue::from_static(role.as_str()),
            );
        }
        if let Some(Ok(v)) = self.community.as_ref().map(|c| c.parse()) {
            md.insert(COMMUNITY_HEADER, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_identity_from_metadata() {
        let mut md = MetadataMap::new();
        md.insert(ACTOR_HEADER, "account:42".parse().unwrap());
        md.insert(ROLE_HEADER, "community_worker".parse().unwrap());
        let actor = Actor::from_metadata(&md).unwrap();
        assert_eq!(actor.id, "account:42");
        assert_eq!(actor.role, Some(Role::CommunityWorker));
        assert_eq!(actor.community, None);

        assert_eq!(Role::from_proto(Role::Cadre.to_proto()), Some(Role::Cadre));
        assert_eq!(Role::from_proto(0), None);
        let mut back = MetadataMap::new();
        actor.to_metadata(&mut back);
        assert_eq!(Actor::from_metadata(&back).unwrap(), actor);
    }

    #[test]
    fn no_identity_is_the_system_and_a_bad_role_is_refused() {
        assert_eq!(
            Actor::from_metadata(&MetadataMap::new()).unwrap(),
            Actor::system()
        );
        let mut md = MetadataMap::new();
        md.insert(ROLE_HEADER, "mayor".parse().unwrap());
        assert!(matches!(
            Actor::from_metadata(&md),
            Err(Error::Unauthenticated(_))
        ));
    }
}
