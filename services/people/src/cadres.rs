//! Units (the agencies that send cadres) and the cadres themselves; county-wide records.

use serde_json::json;
use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{now_micros, to_timestamp};
use linli_core::{Actor, Error, Result};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn create_unit(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::CreateUnitRequest>,
) -> Resp<pb::CreateUnitResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let name = parse_name("name", &r.name)?;
    let unit = api.store.create_unit(actor, &idem, &name).await?;
    Ok(Response::new(pb::CreateUnitResponse { unit: Some(unit) }))
}

pub(crate) async fn get_unit(
    api: &PeopleApi,
    req: Request<pb::GetUnitRequest>,
) -> Resp<pb::GetUnitResponse> {
    let id = parse_id("unit_id", &req.get_ref().unit_id)?;
    Ok(Response::new(pb::GetUnitResponse {
        unit: Some(api.store.get_unit(&id).await?),
    }))
}

pub(crate) async fn list_units(
    api: &PeopleApi,
    req: Request<pb::ListUnitsRequest>,
) -> Resp<pb::ListUnitsResponse> {
    let page = PageRequest::parse(req.get_ref().page_size, &req.get_ref().page_token)?;
    let (units, next_page_token) = api.store.list_units(&page).await?;
    Ok(Response::new(pb::ListUnitsResponse {
        units,
        next_page_token,
    }))
}

impl TryFrom<pb::CreateCadreRequest> for NewCadre {
    type Error = Error;

    fn try_from(r: pb::CreateCadreRequest) -> Result<NewCadre> {
        Ok(NewCadre {
            unit_id: parse_id("unit_id", &r.unit_id)?,
            name: parse_name("name", &r.name)?,
            phone: domain::parse_phone("phone", &r.phone)?,
            title: parse_text("title", &r.title, domain::MAX_NAME_CHARS)?,
        })
    }
}

pub(crate) async fn create_cadre(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::CreateCadreRequest>,
) -> Resp<pb::CreateCadreResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let new = NewCadre::try_from(r)?;
    let cadre = api.store.create_cadre(actor, &idem, new).await?;
    Ok(Response::new(pb::CreateCadreResponse {
        cadre: Some(present_cadre(cadre, actor)),
    }))
}

pub(crate) async fn get_cadre(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetCadreRequest>,
) -> Resp<pb::GetCadreResponse> {
    let id = parse_id("cadre_id", &req.get_ref().cadre_id)?;
    let (cadre, registration) = api.store.get_cadre(&id).await?;
    Ok(Response::new(pb::GetCadreResponse {
        cadre: Some(present_cadre(cadre, actor)),
        registration,
    }))
}

pub(crate) async fn list_cadres(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListCadresRequest>,
) -> Resp<pb::ListCadresResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let unit = parse_opt_id("unit_id", &r.unit_id)?.unwrap_or_default();
    let community = parse_opt_id("community_id", &r.community_id)?.unwrap_or_default();
    let (cadres, next_page_token) = api.store.list_cadres(&unit, &community, &page).await?;
    Ok(Response::new(pb::ListCadresResponse {
        cadres: cadres
            .into_iter()
            .map(|c| present_cadre(c, actor))
            .collect(),
        next_page_token,
    }))
}

impl Store {
    pub async fn create_unit(&self, actor: &Actor, idem: &IdemKey, name: &str) -> Result<pb::Unit> {
        let name = name.to_owned();
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.unit",
            idem,
            |_s, tx, existing| {
                Box::pin(async move {
                    let row = sqlx::query("SELECT id, name, created_at FROM units WHERE id = $1")
                        .bind(existing)
                        .fetch_one(&mut *tx)
                        .await?;
                    unit_from_row(&row)
                })
            },
            |_s, tx, id| {
                Box::pin(async move {
                    let name = name.as_str();

                    let taken: Option<(String,)> =
                        sqlx::query_as("SELECT id FROM units WHERE name = $1")
                            .bind(name)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some((other,)) = taken {
                        return Err(Error::AlreadyExists(format!(
                            "a unit named {name} exists already ({other})"
                        )));
                    }
                    let now = now_micros();
                    sqlx::query("INSERT INTO units (id, name, created_at) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(name)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let change = Change::created(
                        "",
                        "unit.create",
                        "unit",
                        id,
                        json!({ "id": id, "name": name }),
                    );
                    Ok(Made::new(
                        pb::Unit {
                            id: id.to_owned(),
                            name: name.to_owned(),
                            created_at: Some(to_timestamp(now)),
                        },
                        change,
                    ))
                })
            },
        )
        .await
    }

    pub async fn get_unit(&self, id: &str) -> Result<pb::Unit> {
        let row = sqlx::query("SELECT id, name, created_at FROM units WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref()
            .map(unit_from_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("unit", id))
    }

    pub async fn list_units(&self, page: &PageRequest) -> Result<(Vec<pb::Unit>, String)> {
        fetch_page(
            &self.db,
            "SELECT id, name, created_at FROM units WHERE id > $1 ORDER BY id LIMIT $2",
            vec![],
            page,
            unit_from_row,
            |u| &u.id,
        )
        .await
    }

    pub(crate) async fn load_cadre(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Cadre> {
        fetch_by_id(
            conn,
            "SELECT id, unit_id, name, phone, title, created_at FROM cadres WHERE id = $1",
            id,
            "cadre",
            cadre_from_row,
        )
        .await
    }

    pub async fn create_cadre(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewCadre,
    ) -> Result<pb::Cadre> {
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.cadre",
            idem,
            |s, tx, existing| {
                Box::pin(async move {

                    let c = s.load_cadre(&mut *tx, existing).await?;
                    Ok(c)
                })
            },
            |s, tx, id| {
                Box::pin(async move {

                    let unit: Option<(String,)> = sqlx::query_as("SELECT id FROM units WHERE id = $1")
                        .bind(&new.unit_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if unit.is_none() {
                        return Err(Error::not_found("unit", &new.unit_id));
                    }
                    sqlx::query("INSERT INTO cadres (id, unit_id, name, phone, title, created_at, version) VALUES ($1, $2, $3, $4, $5, $6, 1)")
                        .bind(id)
                        .bind(&new.unit_id)
                        .bind(&new.name)
                        .bind(new.phone.map(Phone::into_inner).unwrap_or_default())
                        .bind(&new.title)
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                    let c = s.load_cadre(&mut *tx, id).await?;
                    let after = json!({ "id": c.id, "unit_id": c.unit_id, "name": c.name, "title": c.title, "phone": domain::mask_phone(&c.phone) });
                    let change = Change::created("", "cadre.create", "cadre", id, after);
                    Ok(Made::new(c, change))
                })
            },
        )
        .await
    }

    /// A cadre and their registration that is not ended, if any.
    pub async fn get_cadre(&self, id: &str) -> Result<(pb::Cadre, Option<pb::Registration>)> {
        let mut conn = self.db.pool.acquire().await?;
        let cadre = self.load_cadre(&mut conn, id).await?;
        let open = self.open_registration(&mut conn, id).await?;
        Ok((cadre, open))
    }

    pub async fn list_cadres(
        &self,
        unit_id: &str,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Cadre>, String)> {
        let sql = "SELECT id, unit_id, name, phone, title, created_at FROM cadres WHERE ($1 = '' OR unit_id = $1) \
             AND ($2 = '' OR id IN (SELECT cadre_id FROM registrations WHERE community_id = $2 AND state = 'active')) \
             AND id > $3 ORDER BY id LIMIT $4";
        fetch_page(
            &self.db,
            sql,
            vec![unit_id.into(), community_id.into()],
            page,
            cadre_from_row,
            |c| &c.id,
        )
        .await
    }
}
