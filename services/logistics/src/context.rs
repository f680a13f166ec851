//! What every aggregate's handlers work with: the service's state
//! (`LogisticsApi`: its store and clients), the answer type, and the checks and
//! conversions several aggregates share. `api.rs` (the RPC table) calls the
//! aggregates; they use this, never the table, so dependencies point one way.

use tonic::{Response, Status};

use linli_core::auth::Keys;
use linli_core::people::People;
use linli_core::validate::parse_id;
use linli_core::{Actor, Error, Result, Role};
use linli_proto::logistics::v1 as pb;

use crate::domain::{self};
use crate::store::{Lines, Owned, Store};

pub(crate) type Resp<T> = std::result::Result<Response<T>, Status>;

pub struct LogisticsApi {
    pub(crate) store: Store,
    pub(crate) people: People,
    pub(crate) keys: Keys,
}

pub(crate) fn parse_bundle(field: &str, lines: &[pb::ItemQuantity]) -> Result<Lines> {
    if lines.is_empty() {
        return Err(Error::invalid(field, "must list at least one item"));
    }
    domain::parse_lines(field, lines.iter().map(|l| (l.item_id.clone(), l.quantity)))
}

/// Which households, as stored with a recurring delivery.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Recipients {
    pub all: bool,
    pub min_care_level: i32,
    pub household_ids: Vec<String>,
}

/// The most households a batch may list one by one (a large community has a few thousand).
pub const MAX_LISTED_RECIPIENTS: usize = 5_000;

pub(crate) fn parse_recipients(r: Option<&pb::Recipients>) -> Result<Recipients> {
    let r = r.ok_or_else(|| Error::required("recipients"))?;
    let chosen = usize::from(r.all)
        + usize::from(r.min_care_level != 0)
        + usize::from(!r.household_ids.is_empty());
    if chosen != 1 {
        return Err(Error::invalid(
            "recipients",
            "choose one of all, min_care_level or household_ids",
        ));
    }
    if r.min_care_level != 0 && !(2..=4).contains(&r.min_care_level) {
        return Err(Error::invalid(
            "recipients.min_care_level",
            "must be 2 (watch), 3 (priority) or 4 (intensive)",
        ));
    }
    if r.household_ids.len() > MAX_LISTED_RECIPIENTS {
        return Err(Error::invalid(
            "recipients.household_ids",
            format!(
                "lists at most {MAX_LISTED_RECIPIENTS} households; for more, choose all or a care level"
            ),
        ));
    }
    let mut ids = Vec::with_capacity(r.household_ids.len());
    let mut seen = std::collections::HashSet::with_capacity(r.household_ids.len());
    for (i, h) in r.household_ids.iter().enumerate() {
        let id = parse_id(&format!("recipients.household_ids[{i}]"), h)?;
        if !seen.insert(id.clone()) {
            return Err(Error::invalid(
                format!("recipients.household_ids[{i}]"),
                "repeats a household",
            ));
        }
        ids.push(id);
    }
    Ok(Recipients {
        all: r.all,
        min_care_level: r.min_care_level,
        household_ids: ids,
    })
}

impl LogisticsApi {
    pub fn new(store: Store, people: People, keys: Keys) -> Self {
        LogisticsApi {
            store,
            people,
            keys,
        }
    }

    /// The record's community, if the caller may see it; for a cadre acting on a
    /// delivery or shift under `Reach::Own`, also that it is their own.
    pub(crate) async fn in_reach(&self, actor: &Actor, kind: Owned, id: &str) -> Result<String> {
        let (community, _) = self.store.owner_of(kind, id).await?;
        actor.check_community(kind.name(), id, &community)?;
        Ok(community)
    }

    pub(crate) async fn own_in_reach(&self, actor: &Actor, kind: Owned, id: &str) -> Result<()> {
        let (community, cadre) = self.store.owner_of(kind, id).await?;
        actor.check_community(kind.name(), id, &community)?;
        if actor.role == Role::Cadre && actor.cadre.as_deref() != Some(cadre.as_str()) {
            return Err(Error::PermissionDenied(format!(
                "a cadre acts on their own {} only",
                kind.name()
            )));
        }
        Ok(())
    }

    /// The households a batch goes to, with their care levels, from the people service.
    pub async fn households(
        people: &People,
        actor: &Actor,
        community_id: &str,
        r: &Recipients,
    ) -> Result<Vec<(String, i32)>> {
        if r.household_ids.is_empty() {
            return people
                .households(actor, community_id, r.min_care_level)
                .await;
        }
        let mut out = Vec::new();
        for (i, id) in r.household_ids.iter().enumerate() {
            let h = people.household(actor, id).await?;
            if h.community_id != community_id {
                return Err(Error::invalid(
                    format!("recipients.household_ids[{i}]"),
                    "is not in the depot's community",
                ));
            }
            out.push((h.id, h.care_level));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_recipients_are_bounded_and_checked_in_one_pass() {
        let many = pb::Recipients {
            household_ids: (0..=MAX_LISTED_RECIPIENTS)
                .map(|_| linli_core::new_id())
                .collect(),
            ..Default::default()
        };
        let err = parse_recipients(Some(&many)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. } if field == "recipients.household_ids"),
            "{err:?}"
        );
        let mut most = many.clone();
        most.household_ids.truncate(MAX_LISTED_RECIPIENTS);
        assert_eq!(
            parse_recipients(Some(&most)).unwrap().household_ids.len(),
            MAX_LISTED_RECIPIENTS
        );
        most.household_ids.push(most.household_ids[7].clone());
        most.household_ids.remove(0);
        let err = parse_recipients(Some(&most)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { reason, .. } if reason.contains("repeats")),
            "{err:?}"
        );
    }
}
