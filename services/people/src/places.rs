//! The place tree: county → town → community → compound → building.

use serde_json::json;
use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::now_micros;
use linli_core::validate::{optional_enum, required_enum};
use linli_core::{Actor, Error, Result};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn create_place(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::CreatePlaceRequest>,
) -> Resp<pb::CreatePlaceResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let kind = required_enum("kind", r.kind, domain::PlaceKind::from_proto)?;
    let parent_id = parse_opt_id("parent_id", &r.parent_id)?;
    if parent_id.is_none() && kind != domain::PlaceKind::County {
        return Err(
            Error::invalid("parent_id", format!("is required for a {}", kind.as_str())).into(),
        );
    }
    if let Some(parent) = &parent_id {
        let parent = api.store.get_place(parent).await?;
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
    let place = api.store.create_place(actor, &idem, new).await?;
    Ok(Response::new(pb::CreatePlaceResponse {
        place: Some(place),
    }))
}

pub(crate) async fn get_place(
    api: &PeopleApi,
    req: Request<pb::GetPlaceRequest>,
) -> Resp<pb::GetPlaceResponse> {
    let id = parse_id("place_id", &req.get_ref().place_id)?;
    Ok(Response::new(pb::GetPlaceResponse {
        place: Some(api.store.get_place(&id).await?),
    }))
}

pub(crate) async fn list_places(
    api: &PeopleApi,
    req: Request<pb::ListPlacesRequest>,
) -> Resp<pb::ListPlacesResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let parent = parse_opt_id("parent_id", &r.parent_id)?.unwrap_or_default();
    let community = parse_opt_id("community_id", &r.community_id)?.unwrap_or_default();
    let kind = optional_enum("kind", r.kind, domain::PlaceKind::from_proto)?;
    let (places, next_page_token) = api
        .store
        .list_places(&parent, kind, &community, &page)
        .await?;
    Ok(Response::new(pb::ListPlacesResponse {
        places,
        next_page_token,
    }))
}

impl Store {
    pub(crate) async fn load_place(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<Option<pb::Place>> {
        let row = sqlx::query(&format!("SELECT {PLACE_COLS} FROM places WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(place_from_row).transpose()
    }

    pub async fn get_place(&self, id: &str) -> Result<pb::Place> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_place(&mut conn, id)
            .await?
            .ok_or_else(|| Error::not_found("place", id))
    }

    /// The community with this id; NOT_FOUND when there is none.
    pub(crate) async fn load_community(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Place> {
        match self.load_place(conn, id).await? {
            Some(p) if p.kind == PlaceKind::Community.to_proto() => Ok(p),
            _ => Err(Error::not_found("community", id)),
        }
    }

    pub async fn community(&self, id: &str) -> Result<pb::Place> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_community(&mut conn, id).await
    }

    /// Finds a community by id or by exact name, for command-line use.
    pub async fn find_community(&self, id_or_name: &str) -> Result<pb::Place> {
        let rows = sqlx::query(&format!(
            "SELECT {PLACE_COLS} FROM places WHERE kind = 'community' AND (id = $1 OR name = $1)"
        ))
        .bind(id_or_name)
        .fetch_all(&self.db.pool)
        .await?;
        match rows.as_slice() {
            [one] => place_from_row(one),
            [] => Err(Error::not_found("community", id_or_name)),
            _ => Err(Error::FailedPrecondition(format!(
                "several communities are named {id_or_name}; use the id"
            ))),
        }
    }

    pub async fn create_place(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewPlace,
    ) -> Result<pb::Place> {
        idempotency::create(self, &self.db, actor, "people.place", idem, |s, tx, existing| {
                Box::pin(async move {
                    s.load_place(tx, existing)
                        .await?
                        .ok_or_else(|| Error::not_found("place", existing))
                })
            }, |s, tx, id| Box::pin(async move {
            let parent = match &new.parent_id {
                Some(pid) => Some(
                    s.load_place(tx, pid)
                        .await?
                        .ok_or_else(|| Error::not_found("parent place", pid))?,
                ),
                None => None,
            };
            let expected = new.kind.parent_kind();
            let parent_kind = parent.as_ref().and_then(|p| PlaceKind::from_proto(p.kind));
            if parent_kind != expected {
                let want = expected.map_or("no parent".to_owned(), |k| {
                    format!("a {} as parent", k.as_str())
                });
                return Err(Error::invalid(
                    "parent_id",
                    format!("a {} needs {want}", new.kind.as_str()),
                ));
            }
            let community_id = match new.kind {
                PlaceKind::County | PlaceKind::Town => String::new(),
                PlaceKind::Community => id.to_owned(),
                PlaceKind::Compound | PlaceKind::Building => parent
                    .as_ref()
                    .map(|p| p.community_id.clone())
                    .unwrap_or_default(),
            };
            let parent_id = new.parent_id.unwrap_or_default();
            let now = now_micros();
            sqlx::query("INSERT INTO places (id, kind, parent_id, name, code, community_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(id)
                .bind(new.kind.as_str())
                .bind(&parent_id)
                .bind(&new.name)
                .bind(&new.code)
                .bind(&community_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let after = json!({ "id": id, "kind": new.kind.as_str(), "parent_id": parent_id, "name": new.name, "code": new.code });
            let change = Change::created(&community_id, "place.create", "place", id, after);
            let place = pb::Place {
                id: id.to_owned(),
                kind: new.kind.to_proto(),
                parent_id,
                name: new.name,
                code: new.code,
                community_id,
                created_at: Some(linli_core::time::to_timestamp(now)),
            };
            Ok(Made::new(place, change))
        }))
        .await
    }

    pub async fn list_places(
        &self,
        parent_id: &str,
        kind: Option<PlaceKind>,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Place>, String)> {
        let sql = format!(
            "SELECT {PLACE_COLS} FROM places WHERE ($1 = '' OR parent_id = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR community_id = $3) \
             AND id > $4 ORDER BY id LIMIT $5"
        );
        let kind = kind.map(|k| k.as_str()).unwrap_or_default();
        fetch_page(
            &self.db,
            &sql,
            vec![parent_id.into(), kind.into(), community_id.into()],
            page,
            place_from_row,
            |p| &p.id,
        )
        .await
    }
}
