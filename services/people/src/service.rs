//! The gRPC handlers: read the caller from metadata, turn the request into
//! validated inputs (naming the field at fault), call the store, answer.
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tonic::{Request, Response, Status};

use linli_core::idempotency::idem_key;
use linli_core::page::PageRequest;
use linli_core::time::{now_micros, past_or_now};
use linli_core::validate::{optional_enum, required_enum};
use linli_core::{Actor, Error, Result, Role, audit};
use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_server::PeopleService;

use crate::domain::{self, MAX_TEXT_CHARS, parse_id, parse_name, parse_opt_id, parse_text};
use crate::policy::POLICY;
use crate::store::{
    NewAccount, NewCadre, NewCheckIn, NewHousehold, NewPairing, NewPlace, NewResident, NewVisit,
    ResidentChanges, Store,
};

type Resp<T> = std::result::Result<Response<T>, Status>;

pub struct PeopleApi {
    store: Store,
}

impl PeopleApi {
    pub fn new(store: Store) -> Self {
        PeopleApi { store }
    }
}

/// Whether the caller may see residents' personal data in full.
fn full_view(actor: &Actor, view: i32) -> Result<bool> {
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

fn present(mut r: pb::Resident, full: bool) -> pb::Resident {
    if !full {
        r.phone = domain::mask_phone(&r.phone);
        r.id_number = domain::mask_id_number(&r.id_number);
    }
    r
}

static DUMMY_HASH: OnceLock<String> = OnceLock::new();

pub(crate) fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.into()))
}

/// A cadre acts only as themselves; other roles may record for any cadre.
fn check_own_cadre(actor: &Actor, cadre_id: &str) -> Result<()> {
    match (actor.role, &actor.cadre) {
        (Role::Cadre, Some(own)) if own == cadre_id => Ok(()),
        (Role::Cadre, _) => Err(Error::PermissionDenied(
            "a cadre records only their own registration, check-ins and visits".into(),
        )),
        _ => Ok(()),
    }
}

impl PeopleApi {
    async fn household_in_reach(&self, actor: &Actor, id: &str) -> Result<()> {
        let household = self.store.get_household(id).await?;
        actor.check_community("household", id, &household.community_id)
    }

    async fn resident_in_reach(&self, actor: &Actor, id: &str) -> Result<()> {
        let resident = self.store.get_resident(id).await?;
        actor.check_community("resident", id, &resident.community_id)
    }

    async fn registration_in_reach(&self, actor: &Actor, id: &str) -> Result<()> {
        let registration = self.store.get_registration(id).await?;
        actor.check_community("registration", id, &registration.community_id)
    }
}

#[tonic::async_trait]
impl PeopleService for PeopleApi {
    async fn create_place(
        &self,
        req: Request<pb::CreatePlaceRequest>,
    ) -> Resp<pb::CreatePlaceResponse> {
        let actor = POLICY.allow("CreatePlace", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let kind = required_enum("kind", r.kind, domain::PlaceKind::from_proto)?;
        let parent_id = parse_opt_id("parent_id", &r.parent_id)?;
        if parent_id.is_none() && kind != domain::PlaceKind::County {
            return Err(Error::invalid(
                "parent_id",
                format!("is required for a {}", kind.as_str()),
            )
            .into());
        }
        if let Some(parent) = &parent_id {
            let parent = self.store.get_place(parent).await?;
            if !actor.is_county() {
                // Above community level is county business; below it, the community's own.
                actor.check_community("place", &parent.id, &parent.community_id)?;
            }
        } else if !actor.is_county() {
            return Err(Error::PermissionDenied("only county roles create counties".into()).into());
        }
        let new = NewPlace {
            kind,
            parent_id,
            name: parse_name("name", &r.name)?,
            code: parse_text("code", &r.code, 32)?,
        };
        let place = self.store.create_place(&actor, &idem, new).await?;
        Ok(Response::new(pb::CreatePlaceResponse {
            place: Some(place),
        }))
    }

    async fn get_place(&self, req: Request<pb::GetPlaceRequest>) -> Resp<pb::GetPlaceResponse> {
        POLICY.allow("GetPlace", &req)?;
        let id = parse_id("place_id", &req.get_ref().place_id)?;
        Ok(Response::new(pb::GetPlaceResponse {
            place: Some(self.store.get_place(&id).await?),
        }))
    }

    async fn list_places(
        &self,
        req: Request<pb::ListPlacesRequest>,
    ) -> Resp<pb::ListPlacesResponse> {
        POLICY.allow("ListPlaces", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let parent = parse_opt_id("parent_id", &r.parent_id)?.unwrap_or_default();
        let community = parse_opt_id("community_id", &r.community_id)?.unwrap_or_default();
        let kind = optional_enum("kind", r.kind, domain::PlaceKind::from_proto)?;
        let (places, next_page_token) = self
            .store
            .list_places(&parent, kind, &community, &page)
            .await?;
        Ok(Response::new(pb::ListPlacesResponse {
            places,
            next_page_token,
        }))
    }

    async fn create_household(
        &self,
        req: Request<pb::CreateHouseholdRequest>,
    ) -> Resp<pb::CreateHouseholdResponse> {
        let actor = POLICY.allow("CreateHousehold", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let community_id = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community_id, &community_id)?;
        let new = NewHousehold {
            community_id,
            compound_id: parse_opt_id("compound_id", &r.compound_id)?,
            building_id: parse_opt_id("building_id", &r.building_id)?,
            address: parse_text("address", &r.address, 200).and_then(|a| {
                if a.is_empty() {
                    Err(Error::invalid("address", "must not be empty"))
                } else {
                    Ok(a)
                }
            })?,
            external_ref: parse_text("external_ref", &r.external_ref, 64)?,
        };
        let household = self.store.create_household(&actor, &idem, new).await?;
        Ok(Response::new(pb::CreateHouseholdResponse {
            household: Some(household),
        }))
    }

    async fn get_household(
        &self,
        req: Request<pb::GetHouseholdRequest>,
    ) -> Resp<pb::GetHouseholdResponse> {
        let actor = POLICY.allow("GetHousehold", &req)?;
        let full = full_view(&actor, req.get_ref().view)?;
        let id = parse_id("household_id", &req.get_ref().household_id)?;
        let p = self.store.household_profile(&id).await?;
        actor.check_community("household", &id, &p.household.community_id)?;
        actor.check_household(&id)?;
        Ok(Response::new(pb::GetHouseholdResponse {
            household: Some(p.household),
            residents: p.residents.into_iter().map(|r| present(r, full)).collect(),
            care: Some(pb::Care {
                level: p.care.level.to_proto(),
                visit_every_days: p.care.every_days,
                reason: p.care.reason,
            }),
            pairings: p.pairings,
        }))
    }

    async fn list_households(
        &self,
        req: Request<pb::ListHouseholdsRequest>,
    ) -> Resp<pb::ListHouseholdsResponse> {
        let actor = POLICY.allow("ListHouseholds", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let compound = parse_opt_id("compound_id", &r.compound_id)?.unwrap_or_default();
        let min = optional_enum(
            "min_care_level",
            r.min_care_level,
            domain::CareLevel::from_proto,
        )?;
        let (households, next_page_token) = self
            .store
            .list_households(&community, &compound, min, &page)
            .await?;
        Ok(Response::new(pb::ListHouseholdsResponse {
            households,
            next_page_token,
        }))
    }

    async fn add_resident(
        &self,
        req: Request<pb::AddResidentRequest>,
    ) -> Resp<pb::AddResidentResponse> {
        let actor = POLICY.allow("AddResident", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let today = self.store.local_date(now_micros());
        let birth_date = domain::parse_birth_date("birth_date", &r.birth_date, today)?;
        let id_number = domain::parse_id_number("id_number", &r.id_number)?;
        if let Some((_, encoded)) = &id_number
            && *encoded != birth_date
        {
            return Err(
                Error::invalid("birth_date", "does not match the birth date in id_number").into(),
            );
        }
        let household_id = parse_id("household_id", &r.household_id)?;
        self.household_in_reach(&actor, &household_id).await?;
        let new = NewResident {
            household_id,
            name: parse_name("name", &r.name)?,
            gender: required_enum("gender", r.gender, domain::Gender::from_proto)?,
            birth_date,
            phone: domain::parse_phone("phone", &r.phone)?,
            id_number: id_number.map(|(n, _)| n),
            relation: required_enum("relation", r.relation, domain::Relation::from_proto)?,
            tags: domain::parse_tags("tags", r.tags.iter().map(|t| domain::Tag::from_proto(*t)))?,
        };
        let full = actor.role.sees_personal_data();
        let resident = self.store.add_resident(&actor, &idem, new).await?;
        Ok(Response::new(pb::AddResidentResponse {
            resident: Some(present(resident, full)),
        }))
    }

    async fn get_resident(
        &self,
        req: Request<pb::GetResidentRequest>,
    ) -> Resp<pb::GetResidentResponse> {
        let actor = POLICY.allow("GetResident", &req)?;
        let full = full_view(&actor, req.get_ref().view)?;
        let id = parse_id("resident_id", &req.get_ref().resident_id)?;
        let resident = self.store.get_resident(&id).await?;
        actor.check_community("resident", &id, &resident.community_id)?;
        if actor.check_household(&resident.household_id).is_err() {
            return Err(Error::not_found("resident", id).into());
        }
        Ok(Response::new(pb::GetResidentResponse {
            resident: Some(present(resident, full)),
        }))
    }

    async fn list_residents(
        &self,
        req: Request<pb::ListResidentsRequest>,
    ) -> Resp<pb::ListResidentsResponse> {
        let actor = POLICY.allow("ListResidents", &req)?;
        let r = req.into_inner();
        let full = full_view(&actor, r.view)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let household = parse_opt_id("household_id", &r.household_id)?.unwrap_or_default();
        let household = match (&actor.household, actor.role) {
            // A resident lists their own household's members, whatever they ask for.
            (Some(own), Role::Resident) if household.is_empty() || household == *own => own.clone(),
            (_, Role::Resident) => return Err(Error::not_found("household", household).into()),
            _ => household,
        };
        let tag = optional_enum("tag", r.tag, domain::Tag::from_proto)?;
        let (residents, next_page_token) = self
            .store
            .list_residents(&community, &household, tag, &page)
            .await?;
        let residents = residents.into_iter().map(|r| present(r, full)).collect();
        Ok(Response::new(pb::ListResidentsResponse {
            residents,
            next_page_token,
        }))
    }

    async fn update_resident(
        &self,
        req: Request<pb::UpdateResidentRequest>,
    ) -> Resp<pb::UpdateResidentResponse> {
        let actor = POLICY.allow("UpdateResident", &req)?;
        let r = req.into_inner();
        let id = parse_id("resident_id", &r.resident_id)?;
        self.resident_in_reach(&actor, &id).await?;
        let changes = ResidentChanges {
            phone: r
                .phone
                .as_deref()
                .map(|p| domain::parse_phone("phone", p))
                .transpose()?,
            relation: r
                .relation
                .map(|n| required_enum("relation", n, domain::Relation::from_proto))
                .transpose()?,
            tags: r
                .tags
                .map(|t| {
                    domain::parse_tags(
                        "tags.tags",
                        t.tags.iter().map(|t| domain::Tag::from_proto(*t)),
                    )
                })
                .transpose()?,
        };
        if changes.phone.is_none() && changes.relation.is_none() && changes.tags.is_none() {
            return Err(
                Error::invalid("phone", "nothing to change: set phone, relation or tags").into(),
            );
        }
        let full = actor.role.sees_personal_data();
        let resident = self
            .store
            .update_resident(&actor, &id, r.expected_version, changes)
            .await?;
        Ok(Response::new(pb::UpdateResidentResponse {
            resident: Some(present(resident, full)),
        }))
    }

    async fn remove_resident(
        &self,
        req: Request<pb::RemoveResidentRequest>,
    ) -> Resp<pb::RemoveResidentResponse> {
        let actor = POLICY.allow("RemoveResident", &req)?;
        let r = req.into_inner();
        let id = parse_id("resident_id", &r.resident_id)?;
        self.resident_in_reach(&actor, &id).await?;
        let reason = parse_text("reason", &r.reason, MAX_TEXT_CHARS)?;
        let resident = self
            .store
            .remove_resident(&actor, &id, r.expected_version, &reason)
            .await?;
        Ok(Response::new(pb::RemoveResidentResponse {
            resident: Some(present(resident, false)),
        }))
    }

    async fn create_unit(
        &self,
        req: Request<pb::CreateUnitRequest>,
    ) -> Resp<pb::CreateUnitResponse> {
        let actor = POLICY.allow("CreateUnit", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let name = parse_name("name", &r.name)?;
        let unit = self.store.create_unit(&actor, &idem, &name).await?;
        Ok(Response::new(pb::CreateUnitResponse { unit: Some(unit) }))
    }

    async fn get_unit(&self, req: Request<pb::GetUnitRequest>) -> Resp<pb::GetUnitResponse> {
        POLICY.allow("GetUnit", &req)?;
        let id = parse_id("unit_id", &req.get_ref().unit_id)?;
        Ok(Response::new(pb::GetUnitResponse {
            unit: Some(self.store.get_unit(&id).await?),
        }))
    }

    async fn list_units(&self, req: Request<pb::ListUnitsRequest>) -> Resp<pb::ListUnitsResponse> {
        POLICY.allow("ListUnits", &req)?;
        let page = PageRequest::parse(req.get_ref().page_size, &req.get_ref().page_token)?;
        let (units, next_page_token) = self.store.list_units(&page).await?;
        Ok(Response::new(pb::ListUnitsResponse {
            units,
            next_page_token,
        }))
    }

    async fn create_cadre(
        &self,
        req: Request<pb::CreateCadreRequest>,
    ) -> Resp<pb::CreateCadreResponse> {
        let actor = POLICY.allow("CreateCadre", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let new = NewCadre {
            unit_id: parse_id("unit_id", &r.unit_id)?,
            name: parse_name("name", &r.name)?,
            phone: domain::parse_phone("phone", &r.phone)?,
            title: parse_text("title", &r.title, domain::MAX_NAME_CHARS)?,
        };
        let cadre = self.store.create_cadre(&actor, &idem, new).await?;
        Ok(Response::new(pb::CreateCadreResponse {
            cadre: Some(cadre),
        }))
    }

    async fn get_cadre(&self, req: Request<pb::GetCadreRequest>) -> Resp<pb::GetCadreResponse> {
        POLICY.allow("GetCadre", &req)?;
        let id = parse_id("cadre_id", &req.get_ref().cadre_id)?;
        let (cadre, registration) = self.store.get_cadre(&id).await?;
        Ok(Response::new(pb::GetCadreResponse {
            cadre: Some(cadre),
            registration,
        }))
    }

    async fn list_cadres(
        &self,
        req: Request<pb::ListCadresRequest>,
    ) -> Resp<pb::ListCadresResponse> {
        POLICY.allow("ListCadres", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let unit = parse_opt_id("unit_id", &r.unit_id)?.unwrap_or_default();
        let community = parse_opt_id("community_id", &r.community_id)?.unwrap_or_default();
        let (cadres, next_page_token) = self.store.list_cadres(&unit, &community, &page).await?;
        Ok(Response::new(pb::ListCadresResponse {
            cadres,
            next_page_token,
        }))
    }

    async fn request_registration(
        &self,
        req: Request<pb::RequestRegistrationRequest>,
    ) -> Resp<pb::RequestRegistrationResponse> {
        let actor = POLICY.allow("RequestRegistration", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let cadre = parse_id("cadre_id", &r.cadre_id)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        check_own_cadre(&actor, &cadre)?;
        let registration = self
            .store
            .request_registration(&actor, &idem, &cadre, &community)
            .await?;
        Ok(Response::new(pb::RequestRegistrationResponse {
            registration: Some(registration),
        }))
    }

    async fn approve_registration(
        &self,
        req: Request<pb::ApproveRegistrationRequest>,
    ) -> Resp<pb::ApproveRegistrationResponse> {
        let actor = POLICY.allow("ApproveRegistration", &req)?;
        let id = parse_id("registration_id", &req.get_ref().registration_id)?;
        self.registration_in_reach(&actor, &id).await?;
        let registration = self
            .store
            .move_registration(
                &actor,
                &id,
                req.get_ref().expected_version,
                domain::RegistrationState::Active,
                "",
            )
            .await?;
        Ok(Response::new(pb::ApproveRegistrationResponse {
            registration: Some(registration),
        }))
    }

    async fn end_registration(
        &self,
        req: Request<pb::EndRegistrationRequest>,
    ) -> Resp<pb::EndRegistrationResponse> {
        let actor = POLICY.allow("EndRegistration", &req)?;
        let r = req.into_inner();
        let id = parse_id("registration_id", &r.registration_id)?;
        self.registration_in_reach(&actor, &id).await?;
        let reason = parse_text("reason", &r.reason, MAX_TEXT_CHARS)?;
        let registration = self
            .store
            .move_registration(
                &actor,
                &id,
                r.expected_version,
                domain::RegistrationState::Ended,
                &reason,
            )
            .await?;
        Ok(Response::new(pb::EndRegistrationResponse {
            registration: Some(registration),
        }))
    }

    async fn list_registrations(
        &self,
        req: Request<pb::ListRegistrationsRequest>,
    ) -> Resp<pb::ListRegistrationsResponse> {
        let actor = POLICY.allow("ListRegistrations", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = actor.community_filter("community_id", &r.community_id)?;
        let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
        let state = optional_enum("state", r.state, domain::RegistrationState::from_proto)?;
        let (registrations, next_page_token) = self
            .store
            .list_registrations(&community, &cadre, state, &page)
            .await?;
        Ok(Response::new(pb::ListRegistrationsResponse {
            registrations,
            next_page_token,
        }))
    }

    async fn check_registration(
        &self,
        req: Request<pb::CheckRegistrationRequest>,
    ) -> Resp<pb::CheckRegistrationResponse> {
        let actor = POLICY.allow("CheckRegistration", &req)?;
        let cadre = parse_id("cadre_id", &req.get_ref().cadre_id)?;
        let community = parse_id("community_id", &req.get_ref().community_id)?;
        actor.check_community("community", &community, &community)?;
        let registration = self.store.check_registration(&cadre, &community).await?;
        Ok(Response::new(pb::CheckRegistrationResponse {
            registered: registration.is_some(),
            registration,
        }))
    }

    async fn pair_household(
        &self,
        req: Request<pb::PairHouseholdRequest>,
    ) -> Resp<pb::PairHouseholdResponse> {
        let actor = POLICY.allow("PairHousehold", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let role = required_enum("role", r.role, domain::PairingRole::from_proto)?;
        let cadre_id = parse_opt_id("cadre_id", &r.cadre_id)?;
        let member_name = match (role, &cadre_id) {
            (domain::PairingRole::Cadre, None) => {
                return Err(Error::invalid("cadre_id", "is required for the cadre role").into());
            }
            (domain::PairingRole::Cadre, Some(_)) => None,
            (_, Some(_)) => {
                return Err(Error::invalid("cadre_id", "is only for the cadre role").into());
            }
            (_, None) => Some(parse_name("member_name", &r.member_name)?),
        };
        let household_id = parse_id("household_id", &r.household_id)?;
        self.household_in_reach(&actor, &household_id).await?;
        let new = NewPairing {
            household_id,
            role,
            cadre_id,
            member_name,
            member_phone: domain::parse_phone("member_phone", &r.member_phone)?,
        };
        let pairing = self.store.pair_household(&actor, &idem, new).await?;
        Ok(Response::new(pb::PairHouseholdResponse {
            pairing: Some(pairing),
        }))
    }

    async fn end_pairing(
        &self,
        req: Request<pb::EndPairingRequest>,
    ) -> Resp<pb::EndPairingResponse> {
        let actor = POLICY.allow("EndPairing", &req)?;
        let id = parse_id("pairing_id", &req.get_ref().pairing_id)?;
        let reason = parse_text("reason", &req.get_ref().reason, MAX_TEXT_CHARS)?;
        let pairing = self.store.get_pairing(&id).await?;
        actor.check_community("pairing", &id, &pairing.community_id)?;
        let pairing = self.store.end_pairing(&actor, &id, &reason).await?;
        Ok(Response::new(pb::EndPairingResponse {
            pairing: Some(pairing),
        }))
    }

    async fn list_pairings(
        &self,
        req: Request<pb::ListPairingsRequest>,
    ) -> Resp<pb::ListPairingsResponse> {
        let actor = POLICY.allow("ListPairings", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = actor.community_filter("community_id", &r.community_id)?;
        let household = parse_opt_id("household_id", &r.household_id)?.unwrap_or_default();
        let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
        let (pairings, next_page_token) = self
            .store
            .list_pairings(&community, &household, &cadre, r.include_ended, &page)
            .await?;
        Ok(Response::new(pb::ListPairingsResponse {
            pairings,
            next_page_token,
        }))
    }

    async fn get_coverage_report(
        &self,
        req: Request<pb::GetCoverageReportRequest>,
    ) -> Resp<pb::GetCoverageReportResponse> {
        let actor = POLICY.allow("GetCoverageReport", &req)?;
        let community = parse_id("community_id", &req.get_ref().community_id)?;
        actor.check_community("community", &community, &community)?;
        Ok(Response::new(self.store.coverage_report(&community).await?))
    }

    async fn check_in(&self, req: Request<pb::CheckInRequest>) -> Resp<pb::CheckInResponse> {
        let actor = POLICY.allow("CheckIn", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let cadre_id = parse_id("cadre_id", &r.cadre_id)?;
        let community_id = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community_id, &community_id)?;
        check_own_cadre(&actor, &cadre_id)?;
        let new = NewCheckIn {
            cadre_id,
            community_id,
            at: past_or_now("at", r.at.as_ref())?,
            activity: parse_text("activity", &r.activity, MAX_TEXT_CHARS)?,
        };
        let check_in = self.store.check_in(&actor, &idem, new).await?;
        Ok(Response::new(pb::CheckInResponse {
            check_in: Some(check_in),
        }))
    }

    async fn list_check_ins(
        &self,
        req: Request<pb::ListCheckInsRequest>,
    ) -> Resp<pb::ListCheckInsResponse> {
        let actor = POLICY.allow("ListCheckIns", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = actor.community_filter("community_id", &r.community_id)?;
        let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
        let from = linli_core::time::optional("from", r.from.as_ref())?;
        let to = linli_core::time::optional("to", r.to.as_ref())?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(Error::invalid("to", "is before from").into());
        }
        let (check_ins, next_page_token) = self
            .store
            .list_check_ins(&community, &cadre, from, to, &page)
            .await?;
        Ok(Response::new(pb::ListCheckInsResponse {
            check_ins,
            next_page_token,
        }))
    }

    async fn get_attendance_report(
        &self,
        req: Request<pb::GetAttendanceReportRequest>,
    ) -> Resp<pb::GetAttendanceReportResponse> {
        let actor = POLICY.allow("GetAttendanceReport", &req)?;
        let r = req.into_inner();
        let unit = parse_opt_id("unit_id", &r.unit_id)?.unwrap_or_default();
        let community = if r.community_id.is_empty() && !unit.is_empty() && actor.is_county() {
            String::new()
        } else {
            actor.community_filter("community_id", &r.community_id)?
        };
        if community.is_empty() && unit.is_empty() {
            return Err(Error::invalid("community_id", "set community_id, unit_id or both").into());
        }
        let week_of =
            linli_core::time::optional("week_of", r.week_of.as_ref())?.unwrap_or_else(now_micros);
        Ok(Response::new(
            self.store
                .attendance_report(&community, &unit, week_of)
                .await?,
        ))
    }

    async fn log_visit(&self, req: Request<pb::LogVisitRequest>) -> Resp<pb::LogVisitResponse> {
        let actor = POLICY.allow("LogVisit", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let household_id = parse_id("household_id", &r.household_id)?;
        let cadre_id = parse_id("cadre_id", &r.cadre_id)?;
        self.household_in_reach(&actor, &household_id).await?;
        check_own_cadre(&actor, &cadre_id)?;
        let new = NewVisit {
            household_id,
            cadre_id,
            at: past_or_now("at", r.at.as_ref())?,
            kind: required_enum("kind", r.kind, domain::VisitKind::from_proto)?,
            outcome: required_enum("outcome", r.outcome, domain::VisitOutcome::from_proto)?,
            note: parse_text("note", &r.note, MAX_TEXT_CHARS)?,
        };
        let visit = self.store.log_visit(&actor, &idem, new).await?;
        Ok(Response::new(pb::LogVisitResponse { visit: Some(visit) }))
    }

    async fn list_visits(
        &self,
        req: Request<pb::ListVisitsRequest>,
    ) -> Resp<pb::ListVisitsResponse> {
        let actor = POLICY.allow("ListVisits", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = actor.community_filter("community_id", &r.community_id)?;
        let household = parse_opt_id("household_id", &r.household_id)?.unwrap_or_default();
        let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
        let (visits, next_page_token) = self
            .store
            .list_visits(&community, &household, &cadre, &page)
            .await?;
        Ok(Response::new(pb::ListVisitsResponse {
            visits,
            next_page_token,
        }))
    }

    async fn get_compliance_report(
        &self,
        req: Request<pb::GetComplianceReportRequest>,
    ) -> Resp<pb::GetComplianceReportResponse> {
        let actor = POLICY.allow("GetComplianceReport", &req)?;
        let r = req.into_inner();
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let as_of =
            linli_core::time::optional("as_of", r.as_of.as_ref())?.unwrap_or_else(now_micros);
        Ok(Response::new(
            self.store
                .compliance_report(&community, as_of, r.overdue_only)
                .await?,
        ))
    }

    async fn create_account(
        &self,
        req: Request<pb::CreateAccountRequest>,
    ) -> Resp<pb::CreateAccountResponse> {
        let actor = POLICY.allow("CreateAccount", &req)?;
        let mut r = req.into_inner();
        let password = std::mem::take(&mut r.password);
        // The password stays out of the fingerprint, which is kept with the key.
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let username = domain::parse_username("username", &r.username)?;
        domain::check_password("password", &password)?;
        let role = required_enum("role", r.role, Role::from_proto)?;
        let community_id = parse_opt_id("community_id", &r.community_id)?;
        let cadre_id = parse_opt_id("cadre_id", &r.cadre_id)?;
        let resident_id = parse_opt_id("resident_id", &r.resident_id)?;
        domain::check_account_links(
            role,
            community_id.is_some(),
            cadre_id.is_some(),
            resident_id.is_some(),
        )?;
        domain::check_account_grant(actor.role, role)?;
        match &community_id {
            Some(c) => actor.check_community("community", c, c)?,
            None if !actor.is_county() => {
                return Err(Error::PermissionDenied(
                    "county-wide accounts are made by county roles".into(),
                )
                .into());
            }
            None => {}
        }
        let password_hash = blocking(move || hash_password(&password)).await??;
        let new = NewAccount {
            username,
            password_hash,
            role,
            community_id,
            cadre_id,
            resident_id,
        };
        let account = self.store.create_account(&actor, &idem, new).await?;
        Ok(Response::new(pb::CreateAccountResponse {
            account: Some(account),
        }))
    }

    async fn get_account(
        &self,
        req: Request<pb::GetAccountRequest>,
    ) -> Resp<pb::GetAccountResponse> {
        let actor = POLICY.allow("GetAccount", &req)?;
        let id = parse_id("account_id", &req.get_ref().account_id)?;
        let account = self.store.get_account(&id).await?;
        actor.check_community("account", &id, &account.community_id)?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(account),
        }))
    }

    async fn list_accounts(
        &self,
        req: Request<pb::ListAccountsRequest>,
    ) -> Resp<pb::ListAccountsResponse> {
        let actor = POLICY.allow("ListAccounts", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = actor.community_filter("community_id", &r.community_id)?;
        let role = optional_enum("role", r.role, Role::from_proto)?;
        let (accounts, next_page_token) = self.store.list_accounts(&community, role, &page).await?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts,
            next_page_token,
        }))
    }

    async fn verify_password(
        &self,
        req: Request<pb::VerifyPasswordRequest>,
    ) -> Resp<pb::VerifyPasswordResponse> {
        POLICY.allow("VerifyPassword", &req)?;
        let r = req.into_inner();
        if r.username.is_empty() {
            return Err(Error::required("username").into());
        }
        let found = self.store.account_for_login(r.username.trim()).await?;
        // An unknown username costs as much as a wrong password, so timing does not reveal which usernames exist.
        let (account, hash) = match found {
            Some((a, h)) => (Some(a), h),
            None => (
                None,
                DUMMY_HASH
                    .get_or_init(|| hash_password("linli-no-such-account").unwrap_or_default())
                    .clone(),
            ),
        };
        let ok = blocking(move || verify_password(&r.password, &hash)).await?;
        match account {
            Some(account) if ok => Ok(Response::new(pb::VerifyPasswordResponse {
                account: Some(account),
            })),
            _ => Err(Error::Unauthenticated("wrong username or password".into()).into()),
        }
    }

    async fn get_community_summary(
        &self,
        req: Request<pb::GetCommunitySummaryRequest>,
    ) -> Resp<pb::GetCommunitySummaryResponse> {
        let actor = POLICY.allow("GetCommunitySummary", &req)?;
        let community = parse_id("community_id", &req.get_ref().community_id)?;
        actor.check_community("community", &community, &community)?;
        Ok(Response::new(
            self.store.community_summary(&community).await?,
        ))
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Resp<pb::ListAuditEventsResponse> {
        let actor = POLICY.allow("ListAuditEvents", &req)?;
        let r = req.into_inner();
        actor.check_community("community", &r.community_id, &r.community_id)?;
        let (events, next_page_token) = audit::list_request(
            &self.store.db,
            &r.community_id,
            &r.entity_id,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn verify_audit_trail(
        &self,
        req: Request<pb::VerifyAuditTrailRequest>,
    ) -> Resp<pb::VerifyAuditTrailResponse> {
        let actor = POLICY.allow("VerifyAuditTrail", &req)?;
        let community = &req.get_ref().community_id;
        actor.check_community("community", community, community)?;
        let verification = audit::verify_request(&self.store.db, community).await?;
        Ok(Response::new(pb::VerifyAuditTrailResponse {
            verification: Some(verification),
        }))
    }
}
