//! Residents: who lives in a household, their vulnerability tags, and masking of personal data.

use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, now_micros};
use linli_core::validate::{optional_enum, required_enum};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

impl NewResident {
    /// The request checked field by field, as of `today` (a birth date may not be
    /// in the future, and must agree with the ID number's).
    pub fn parse(r: pb::AddResidentRequest, today: chrono::NaiveDate) -> Result<NewResident> {
        let birth_date = domain::parse_birth_date("birth_date", &r.birth_date, today)?;
        let id_number = domain::parse_id_number("id_number", &r.id_number)?;
        if let Some((_, encoded)) = &id_number
            && *encoded != birth_date
        {
            return Err(Error::invalid(
                "birth_date",
                "does not match the birth date in id_number",
            ));
        }
        Ok(NewResident {
            household_id: parse_id("household_id", &r.household_id)?,
            name: parse_name("name", &r.name)?,
            gender: required_enum("gender", r.gender, domain::Gender::from_proto)?,
            birth_date,
            phone: domain::parse_phone("phone", &r.phone)?,
            id_number: id_number.map(|(n, _)| n),
            relation: required_enum("relation", r.relation, domain::Relation::from_proto)?,
            tags: domain::parse_tags("tags", r.tags.iter().map(|t| domain::Tag::from_proto(*t)))?,
        })
    }
}

pub(crate) async fn add_resident(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::AddResidentRequest>,
) -> Resp<pb::AddResidentResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let new = NewResident::parse(r, api.store.local_date(now_micros()))?;
    api.household_in_reach(actor, &new.household_id).await?;
    let full = actor.role.sees_personal_data();
    let resident = api.store.add_resident(actor, &idem, new).await?;
    Ok(Response::new(pb::AddResidentResponse {
        resident: Some(present(resident, full)),
    }))
}

pub(crate) async fn get_resident(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetResidentRequest>,
) -> Resp<pb::GetResidentResponse> {
    let full = full_view(actor, req.get_ref().view)?;
    let id = parse_id("resident_id", &req.get_ref().resident_id)?;
    let resident = api.store.get_resident(&id).await?;
    actor.check_community("resident", &id, &resident.community_id)?;
    if actor.check_household(&resident.household_id).is_err() {
        return Err(Error::not_found("resident", id).into());
    }
    Ok(Response::new(pb::GetResidentResponse {
        resident: Some(present(resident, full)),
    }))
}

pub(crate) async fn list_residents(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListResidentsRequest>,
) -> Resp<pb::ListResidentsResponse> {
    let r = req.into_inner();
    let full = full_view(actor, r.view)?;
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let household = parse_opt_id("household_id", &r.household_id)?.unwrap_or_default();
    let household = match (&actor.household, actor.role) {
        // A resident lists their own household's members, whatever they ask for.
        (Some(own), Role::Resident) if household.is_empty() || household == *own => own.clone(),
        (_, Role::Resident) => return Err(Error::not_found("household", household).into()),
        _ => household,
    };
    let tag = optional_enum("tag", r.tag, domain::Tag::from_proto)?;
    let (residents, next_page_token) = api
        .store
        .list_residents(&community, &household, tag, &page)
        .await?;
    let residents = residents.into_iter().map(|r| present(r, full)).collect();
    Ok(Response::new(pb::ListResidentsResponse {
        residents,
        next_page_token,
    }))
}

pub(crate) async fn update_resident(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::UpdateResidentRequest>,
) -> Resp<pb::UpdateResidentResponse> {
    let r = req.into_inner();
    let id = parse_id("resident_id", &r.resident_id)?;
    api.resident_in_reach(actor, &id).await?;
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
    let resident = api
        .store
        .update_resident(actor, &id, r.expected_version, changes)
        .await?;
    Ok(Response::new(pb::UpdateResidentResponse {
        resident: Some(present(resident, full)),
    }))
}

pub(crate) async fn remove_resident(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::RemoveResidentRequest>,
) -> Resp<pb::RemoveResidentResponse> {
    let r = req.into_inner();
    let id = parse_id("resident_id", &r.resident_id)?;
    api.resident_in_reach(actor, &id).await?;
    let reason = parse_text("reason", &r.reason, MAX_TEXT_CHARS)?;
    let resident = api
        .store
        .remove_resident(actor, &id, r.expected_version, &reason)
        .await?;
    Ok(Response::new(pb::RemoveResidentResponse {
        resident: Some(present(resident, false)),
    }))
}

impl Store {
    pub(crate) async fn load_resident(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Resident> {
        let row = sqlx::query(&format!(
            "SELECT {RESIDENT_COLS} FROM residents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref()
            .map(|r| resident_from_row(r, self.today()))
            .transpose()?
            .ok_or_else(|| Error::not_found("resident", id))
    }

    pub async fn get_resident(&self, id: &str) -> Result<pb::Resident> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_resident(&mut conn, id).await
    }

    pub async fn add_resident(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewResident,
    ) -> Result<pb::Resident> {
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.resident",
            idem,
            |s, tx, existing| Box::pin(s.load_resident(tx, existing)),
            |s, tx, id| {
                Box::pin(async move {
            let household = s.load_household(&mut *tx, &new.household_id).await?;
            if let Some(idn) = &new.id_number {
                let clash: Option<(String,)> = sqlx::query_as("SELECT household_id FROM residents WHERE community_id = $1 AND id_number = $2 AND removed_at IS NULL")
                    .bind(&household.community_id)
                    .bind(idn.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some((other,)) = clash {
                    return Err(Error::AlreadyExists(format!(
                        "a resident with this id_number already lives in household {other}"
                    )));
                }
            }
            let now = now_micros();
            sqlx::query(
                "INSERT INTO residents (community_id, id, household_id, name, gender, birth_date, phone, id_number, relation, tags, created_at, removed_at, removed_reason, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, '', 1)",
            )
            .bind(&household.community_id)
            .bind(id)
            .bind(&household.id)
            .bind(&new.name)
            .bind(new.gender.as_str())
            .bind(new.birth_date.format("%Y-%m-%d").to_string())
            .bind(new.phone.map(Phone::into_inner).unwrap_or_default())
            .bind(new.id_number.map(IdNumber::into_inner).unwrap_or_default())
            .bind(new.relation.as_str())
            .bind(domain::tags_to_db(&new.tags))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let r = s.load_resident(&mut *tx, id).await?;
                    let change = Change::created(
                        &r.community_id,
                        "resident.add",
                        "resident",
                        &r.id,
                        resident_json(&r),
                    );
                    let care = s
                        .refresh_household(&mut *tx, &household.community_id, &household.id)
                        .await?;
                    Ok(Made {
                        then: care.into_iter().collect(),
                        ..Made::new(r, change)
                    })
                })
            },
        )
        .await
    }

    pub async fn list_residents(
        &self,
        community_id: &str,
        household_id: &str,
        tag: Option<Tag>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Resident>, String)> {
        self.community(community_id).await?;
        let sql = format!(
            "SELECT {RESIDENT_COLS} FROM residents WHERE community_id = $1 AND ($2 = '' OR household_id = $2) \
             AND ($3 = '' OR tags LIKE $3 OR birth_date <= $4) AND removed_at IS NULL AND id > $5 ORDER BY id LIMIT $6"
        );
        let today = self.today();
        // The elderly are also those born on or before this day, tagged or not.
        let born_by = match tag {
            Some(Tag::Elderly) => today
                .checked_sub_months(chrono::Months::new(12 * crate::care::ELDERLY_AGE as u32))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let tag = tag
            .map(|t| format!("%,{},%", t.as_str()))
            .unwrap_or_default();
        fetch_page(
            &self.db,
            &sql,
            vec![
                community_id.into(),
                household_id.into(),
                tag.as_str().into(),
                born_by.as_str().into(),
            ],
            page,
            |r| resident_from_row(r, today),
            |r| &r.id,
        )
        .await
    }

    /// After a resident changed: the change in the audit trail, then the
    /// household's care recomputed and recorded if it moved.
    async fn record_resident_change(
        &self,
        tx: &mut AnyConnection,
        actor: &Actor,
        action: &str,
        before: &pb::Resident,
    ) -> Result<pb::Resident> {
        let after = self.load_resident(tx, &before.id).await?;
        let change = Change::updated(
            &after.community_id,
            action,
            "resident",
            &after.id,
            resident_json(before),
            resident_json(&after),
        );
        audit::record(tx, actor, change).await?;
        if let Some(care) = self
            .refresh_household(tx, &after.community_id, &after.household_id)
            .await?
        {
            audit::record(tx, actor, care).await?;
        }
        Ok(after)
    }

    pub async fn update_resident(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        changes: ResidentChanges,
    ) -> Result<pb::Resident> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_resident(&mut tx, id).await?;
        if before.removed_at.is_some() {
            return Err(Error::FailedPrecondition(
                "the resident has moved out".into(),
            ));
        }
        domain::check_version("expected_version", expected_version, before.version)?;
        let phone = match changes.phone {
            Some(p) => p.map(domain::Phone::into_inner).unwrap_or_default(),
            None => before.phone.clone(),
        };
        let relation = changes
            .relation
            .or_else(|| domain::Relation::from_proto(before.relation))
            .unwrap_or(domain::Relation::Other);
        let tags = match changes.tags {
            Some(t) => t,
            None => before
                .tags
                .iter()
                .filter_map(|t| Tag::from_proto(*t))
                .collect(),
        };
        let updated = sqlx::query("UPDATE residents SET phone = $3, relation = $4, tags = $5, version = version + 1 WHERE community_id = $1 AND id = $2 AND version = $6")
            .bind(&before.community_id)
            .bind(id)
            .bind(&phone)
            .bind(relation.as_str())
            .bind(domain::tags_to_db(&tags))
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the resident changed since you read it; read it again".into(),
            ));
        }
        let after = self
            .record_resident_change(&mut tx, actor, "resident.update", &before)
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn remove_resident(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        reason: &str,
    ) -> Result<pb::Resident> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_resident(&mut tx, id).await?;
        if before.removed_at.is_some() {
            return Err(Error::FailedPrecondition(
                "the resident has already moved out".into(),
            ));
        }
        domain::check_version("expected_version", expected_version, before.version)?;
        let updated = sqlx::query("UPDATE residents SET removed_at = $3, removed_reason = $4, version = version + 1 WHERE community_id = $1 AND id = $2 AND version = $5")
            .bind(&before.community_id)
            .bind(id)
            .bind(now_micros())
            .bind(reason)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the resident changed since you read it; read it again".into(),
            ));
        }
        let after = self
            .record_resident_change(&mut tx, actor, "resident.remove", &before)
            .await?;
        // Whoever moved out no longer logs in as a member of the household.
        self.disable_accounts_of_resident(&mut tx, actor, id)
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// When a resident record was made; the import tells new records from earlier ones by it.
    pub async fn resident_created_at(&self, id: &str) -> Result<Micros> {
        let (at,): (i64,) = sqlx::query_as("SELECT created_at FROM residents WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(at)
    }
}
