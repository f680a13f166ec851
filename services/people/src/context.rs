//! What every aggregate's handlers work with: the service's state
//! (`PeopleApi`: its store and clients), the answer type, and the checks and
//! conversions several aggregates share. `api.rs` (the RPC table) calls the
//! aggregates; they use this, never the table, so dependencies point one way.

use tonic::{Response, Status};

use linli_core::{Actor, Error, Result, Role};
use linli_proto::people::v1 as pb;

use crate::domain::{self};
use crate::store::Store;

pub(crate) type Resp<T> = std::result::Result<Response<T>, Status>;

pub struct PeopleApi {
    pub(crate) store: Store,
}

impl PeopleApi {
    pub fn new(store: Store) -> Self {
        PeopleApi { store }
    }
}

/// Whether the caller may see residents' personal data in full.
pub(crate) fn full_view(actor: &Actor, view: i32) -> Result<bool> {
    match pb::ResidentView::try_from(view) {
        Ok(pb::ResidentView::Unspecified | pb::ResidentView::Masked) => Ok(false),
        Ok(pb::ResidentView::Full) => match actor.role {
            role if role.sees_personal_data() => Ok(true),
            _ => Err(Error::PermissionDenied(
                "the full view of residents needs the admin or community_worker role".into(),
            )),
        },
        Err(_) => Err(Error::invalid(
            "view",
            format!("{view} is not a known value"),
        )),
    }
}

pub(crate) fn present(mut r: pb::Resident, full: bool) -> pb::Resident {
    if !full {
        r.phone = domain::mask_phone(&r.phone);
        r.id_number = domain::mask_id_number(&r.id_number);
    }
    r
}

/// Carers' and cadres' phone numbers, masked like residents' for roles that do
/// not need them; but a household sees its own carers' numbers whole: they are
/// the people it must be able to call.
pub(crate) fn present_pairing(mut p: pb::Pairing, actor: &Actor) -> pb::Pairing {
    let own_carer =
        actor.role == Role::Resident && actor.household.as_deref() == Some(&p.household_id);
    if !actor.role.sees_personal_data() && !own_carer {
        p.member_phone = domain::mask_phone(&p.member_phone);
    }
    p
}

pub(crate) fn present_cadre(mut c: pb::Cadre, actor: &Actor) -> pb::Cadre {
    if !actor.role.sees_personal_data() {
        c.phone = domain::mask_phone(&c.phone);
    }
    c
}

/// A cadre acts only as themselves; other roles may record for any cadre.
pub(crate) fn check_own_cadre(actor: &Actor, cadre_id: &str) -> Result<()> {
    match (actor.role, &actor.cadre) {
        (Role::Cadre, Some(own)) if own == cadre_id => Ok(()),
        (Role::Cadre, _) => Err(Error::PermissionDenied(
            "a cadre records only their own registration, check-ins and visits".into(),
        )),
        _ => Ok(()),
    }
}

impl PeopleApi {
    pub(crate) async fn household_in_reach(&self, actor: &Actor, id: &str) -> Result<()> {
        let household = self.store.get_household(id).await?;
        actor.check_community("household", id, &household.community_id)
    }

    pub(crate) async fn resident_in_reach(&self, actor: &Actor, id: &str) -> Result<()> {
        let resident = self.store.get_resident(id).await?;
        actor.check_community("resident", id, &resident.community_id)
    }

    pub(crate) async fn registration_in_reach(&self, actor: &Actor, id: &str) -> Result<()> {
        let registration = self.store.get_registration(id).await?;
        actor.check_community("registration", id, &registration.community_id)
    }
}
