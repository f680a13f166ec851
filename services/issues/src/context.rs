//! What every aggregate's handlers work with: the service's state
//! (`IssuesApi`: its store and clients), the answer type, and the checks and
//! conversions several aggregates share. `api.rs` (the RPC table) calls the
//! aggregates; they use this, never the table, so dependencies point one way.

use tonic::{Response, Status};

use linli_core::time::{now_micros, past_or_now};
use linli_core::validate::{parse_id, parse_text};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::issues::v1 as pb;

use crate::domain::{self, Claimant, PhotoPhase};
use crate::store::{Move, Store};
use linli_core::people::People;

pub(crate) type Resp<T> = std::result::Result<Response<T>, Status>;

pub struct IssuesApi {
    pub(crate) store: Store,
    pub(crate) people: People,
}

impl IssuesApi {
    pub fn new(store: Store, people: People) -> Self {
        IssuesApi { store, people }
    }

    /// Checks a claimant with the people service: the unit exists, and every
    /// cadre is actively registered with the issue's community.
    pub(crate) async fn claimant(
        &self,
        actor: &Actor,
        community_id: &str,
        cadre_id: &str,
        unit_id: &str,
        participants: &[String],
    ) -> Result<Claimant> {
        // The shape is checked first; only then is people asked who the unit is.
        let claimant = match domain::parse_claimant(cadre_id, unit_id, participants)? {
            Claimant {
                cadre_id: Some(cadre),
                participants,
                ..
            } => {
                let unit_id = self.people.cadre(actor, &cadre).await?.unit_id;
                Claimant {
                    cadre_id: Some(cadre),
                    unit_id,
                    participants,
                }
            }
            unit_claim => {
                self.people.unit(actor, &unit_claim.unit_id).await?;
                unit_claim
            }
        };
        for cadre in claimant.cadres() {
            if !self
                .people
                .is_registered(actor, cadre, community_id)
                .await?
            {
                return Err(self.people.not_registered(actor, cadre, community_id).await);
            }
        }
        Ok(claimant)
    }

    /// The issue, if the caller may see it: in their community and, for a
    /// resident, their household's or no household's.
    pub(crate) async fn issue_in_reach(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<crate::store::IssueRecord> {
        let record = self.store.record(id).await?;
        record.check_visible(actor)?;
        Ok(record)
    }

    /// Only the reporting household may confirm or reopen; an issue no household
    /// reported may be confirmed by any household of its community.
    pub(crate) async fn check_household(
        &self,
        actor: &Actor,
        issue: &crate::store::IssueRecord,
        household_id: &str,
    ) -> Result<()> {
        let household_id = parse_id("household_id", household_id)?;
        if actor.role == Role::Resident && actor.household.as_deref() != Some(household_id.as_str())
        {
            return Err(Error::PermissionDenied(
                "a resident confirms or reopens for their own household only".into(),
            ));
        }
        if issue.household_id.is_empty() {
            let h = self.people.household(actor, &household_id).await?;
            if h.community_id != issue.community_id {
                return Err(Error::PermissionDenied(
                    "the household is not in the issue's community".into(),
                ));
            }
        } else if issue.household_id != household_id {
            return Err(Error::PermissionDenied(
                "only the household that reported the issue can confirm or reopen it".into(),
            ));
        }
        Ok(())
    }
}

pub(crate) fn parse_move(t: Option<pb::Transition>) -> Result<Move> {
    let t = t.ok_or_else(|| Error::required("transition"))?;
    Ok(Move {
        issue_id: parse_id("transition.issue_id", &t.issue_id)?,
        expected_version: t.expected_version,
        note: parse_text("transition.note", &t.note, 1000)?,
        at: t
            .at
            .as_ref()
            .map(|at| past_or_now("transition.at", Some(at)))
            .transpose()?,
    })
}

pub(crate) fn parse_attachments(list: &[pb::Attachment]) -> Result<Vec<domain::Attachment>> {
    if list.len() > 20 {
        return Err(Error::invalid("attachments", "at most 20 per request"));
    }
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            domain::parse_attachment(
                &format!("attachments[{i}]"),
                &a.url,
                &a.sha256,
                &a.mime_type,
                PhotoPhase::from_proto(a.phase),
            )
        })
        .collect()
}

/// The reporting period [from, to), defaulting to everything up to now.
pub(crate) fn period(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Result<(i64, i64)> {
    let from = linli_core::time::optional("from", from)?.unwrap_or(i64::MIN);
    let to = linli_core::time::optional("to", to)?.unwrap_or_else(|| now_micros() + 1);
    if from >= to {
        return Err(Error::invalid("to", "must be after from"));
    }
    Ok((from, to))
}
