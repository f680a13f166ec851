//! Dual registration (双报到): a cadre asks to serve a community, the community approves, either ends it.

use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, now_micros};
use linli_core::validate::optional_enum;
use linli_core::{Actor, Error, Result};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn request_registration(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::RequestRegistrationRequest>,
) -> Resp<pb::RequestRegistrationResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let cadre = parse_id("cadre_id", &r.cadre_id)?;
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    check_own_cadre(actor, &cadre)?;
    let registration = api
        .store
        .request_registration(actor, &idem, &cadre, &community)
        .await?;
    Ok(Response::new(pb::RequestRegistrationResponse {
        registration: Some(registration),
    }))
}

/// How far back a registration may be dated when it is approved.
const MAX_BACKDATE: Micros = 366 * 24 * 3600 * 1_000_000;

pub(crate) async fn approve_registration(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ApproveRegistrationRequest>,
) -> Resp<pb::ApproveRegistrationResponse> {
    let id = parse_id("registration_id", &req.get_ref().registration_id)?;
    let now = now_micros();
    let active_from =
        match linli_core::time::optional("active_from", req.get_ref().active_from.as_ref())? {
            None => now,
            Some(at) if at > now => {
                return Err(Error::invalid("active_from", "must not be in the future").into());
            }
            Some(at) if at < now - MAX_BACKDATE => {
                return Err(Error::invalid("active_from", "may go back at most a year").into());
            }
            Some(at) => at,
        };
    api.registration_in_reach(actor, &id).await?;
    let registration = api
        .store
        .move_registration(
            actor,
            &id,
            req.get_ref().expected_version,
            domain::RegistrationState::Active,
            "",
            active_from,
        )
        .await?;
    Ok(Response::new(pb::ApproveRegistrationResponse {
        registration: Some(registration),
    }))
}

pub(crate) async fn end_registration(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::EndRegistrationRequest>,
) -> Resp<pb::EndRegistrationResponse> {
    let r = req.into_inner();
    let id = parse_id("registration_id", &r.registration_id)?;
    api.registration_in_reach(actor, &id).await?;
    let reason = parse_text("reason", &r.reason, MAX_TEXT_CHARS)?;
    let registration = api
        .store
        .move_registration(
            actor,
            &id,
            r.expected_version,
            domain::RegistrationState::Ended,
            &reason,
            now_micros(),
        )
        .await?;
    Ok(Response::new(pb::EndRegistrationResponse {
        registration: Some(registration),
    }))
}

pub(crate) async fn list_registrations(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListRegistrationsRequest>,
) -> Resp<pb::ListRegistrationsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_filter("community_id", &r.community_id)?;
    let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
    let state = optional_enum("state", r.state, domain::RegistrationState::from_proto)?;
    let (registrations, next_page_token) = api
        .store
        .list_registrations(&community, &cadre, state, &page)
        .await?;
    Ok(Response::new(pb::ListRegistrationsResponse {
        registrations,
        next_page_token,
    }))
}

pub(crate) async fn check_registration(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::CheckRegistrationRequest>,
) -> Resp<pb::CheckRegistrationResponse> {
    let cadre = parse_id("cadre_id", &req.get_ref().cadre_id)?;
    let community = parse_id("community_id", &req.get_ref().community_id)?;
    actor.check_community_id(&community)?;
    let registration = api.store.check_registration(&cadre, &community).await?;
    Ok(Response::new(pb::CheckRegistrationResponse {
        registered: registration.is_some(),
        registration,
    }))
}

impl Store {
    pub(crate) async fn open_registration(
        &self,
        conn: &mut AnyConnection,
        cadre_id: &str,
    ) -> Result<Option<pb::Registration>> {
        let row = sqlx::query(&format!("SELECT {REGISTRATION_COLS} FROM registrations WHERE cadre_id = $1 AND state <> 'ended' ORDER BY id DESC LIMIT 1"))
            .bind(cadre_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    pub(crate) async fn load_registration(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Registration> {
        fetch_by_id(
            conn,
            &format!("SELECT {REGISTRATION_COLS} FROM registrations WHERE id = $1"),
            id,
            "registration",
            registration_from_row,
        )
        .await
    }

    pub async fn get_registration(&self, id: &str) -> Result<pb::Registration> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_registration(&mut conn, id).await
    }

    /// The cadre's active registration with this community, if they have one.
    pub(crate) async fn active_registration(
        &self,
        conn: &mut AnyConnection,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<Option<pb::Registration>> {
        let row = sqlx::query(&format!("SELECT {REGISTRATION_COLS} FROM registrations WHERE community_id = $1 AND cadre_id = $2 AND state = 'active'"))
            .bind(community_id)
            .bind(cadre_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    /// The cadre's active registration with the community, or why there is none.
    pub(crate) async fn require_registered(
        &self,
        conn: &mut AnyConnection,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<pb::Registration> {
        let cadre = self.load_cadre(conn, cadre_id).await?;
        match self
            .active_registration(conn, cadre_id, community_id)
            .await?
        {
            Some(r) => Ok(r),
            None => Err(Error::FailedPrecondition(format!(
                "cadre {} ({cadre_id}) is not actively registered with community {} (双报到)",
                cadre.name,
                self.community_named(conn, community_id).await
            ))),
        }
    }

    /// How a message names a community: `双泉社区 (<id>)`, or the id alone if it cannot be read.
    pub(crate) async fn community_named(&self, conn: &mut AnyConnection, id: &str) -> String {
        match self.load_place(conn, id).await {
            Ok(Some(place)) => format!("{} ({id})", place.name),
            _ => id.to_owned(),
        }
    }

    /// As [`Store::require_registered`], and the registration had taken effect by `at`.
    pub(crate) async fn require_registered_at(
        &self,
        conn: &mut AnyConnection,
        cadre_id: &str,
        community_id: &str,
        at: Micros,
    ) -> Result<()> {
        let registration = self
            .require_registered(conn, cadre_id, community_id)
            .await?;
        let from = registration
            .activated_at
            .as_ref()
            .map_or(i64::MAX, linli_core::time::micros);
        if at < from {
            let cadre = self.load_cadre(conn, cadre_id).await?;
            return Err(Error::FailedPrecondition(format!(
                "cadre {} ({cadre_id}) was not yet registered with community {} then: the registration took effect {}; a worker can approve it with an earlier active_from",
                cadre.name,
                self.community_named(conn, community_id).await,
                linli_core::time::local(from, self.utc_offset)
            )));
        }
        Ok(())
    }

    pub async fn check_registration(
        &self,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<Option<pb::Registration>> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_cadre(&mut conn, cadre_id).await?;
        self.load_community(&mut conn, community_id).await?;
        self.active_registration(&mut conn, cadre_id, community_id)
            .await
    }

    pub async fn request_registration(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<pb::Registration> {
        let cadre_id = cadre_id.to_owned();
        let community_id = community_id.to_owned();
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.registration",
            idem,
            |s, tx, existing| {
                Box::pin(async move {

                    let r = s.load_registration(&mut *tx, existing).await?;
                    Ok(r)
                })
            },
            |s, tx, id| {
                Box::pin(async move {
                    let cadre_id = cadre_id.as_str();
                    let community_id = community_id.as_str();


                    s.load_community(&mut *tx, community_id).await?;
                    // The cadre's row lock orders concurrent requests for one cadre.
                    let locked = sqlx::query("UPDATE cadres SET version = version + 1 WHERE id = $1")
                        .bind(cadre_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if locked == 0 {
                        return Err(Error::not_found("cadre", cadre_id));
                    }
                    if let Some(open) = s.open_registration(&mut *tx, cadre_id).await? {
                        let cadre = s.load_cadre(&mut *tx, cadre_id).await?;
                        return Err(Error::FailedPrecondition(format!(
                            "cadre {} ({cadre_id}) already has a registration with community {} that is not ended; end it first",
                            cadre.name,
                            s.community_named(&mut *tx, &open.community_id).await
                        )));
                    }
                    sqlx::query("INSERT INTO registrations (community_id, id, cadre_id, state, requested_at, activated_at, ended_at, end_reason, version) VALUES ($1, $2, $3, 'requested', $4, NULL, NULL, '', 1)")
                        .bind(community_id)
                        .bind(id)
                        .bind(cadre_id)
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                    let r = s.load_registration(&mut *tx, id).await?;
                    let change = Change::created(
                            community_id,
                            "registration.request",
                            "registration",
                            id,
                            registration_json(&r),
                        );
                    Ok(Made::new(r, change))
                })
            },
        )
        .await
    }

    pub async fn move_registration(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        to: RegistrationState,
        reason: &str,
        at: Micros,
    ) -> Result<pb::Registration> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_registration(&mut tx, id).await?;
        let from = RegistrationState::from_proto(before.state)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("bad state")))?;
        domain::check_version("expected_version", expected_version, before.version)?;
        domain::check_registration_move(from, to)?;
        let now = at;
        let updated = sqlx::query(
            "UPDATE registrations SET state = $3, activated_at = CASE WHEN $3 = 'active' THEN $4 ELSE activated_at END, \
             ended_at = CASE WHEN $3 = 'ended' THEN $4 ELSE ended_at END, end_reason = $5, version = version + 1 \
             WHERE community_id = $1 AND id = $2 AND version = $6",
        )
        .bind(&before.community_id)
        .bind(id)
        .bind(to.as_str())
        .bind(now)
        .bind(reason)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the registration changed since you read it; read it again".into(),
            ));
        }
        let after = self.load_registration(&mut tx, id).await?;
        let action = if to == RegistrationState::Active {
            "registration.approve"
        } else {
            "registration.end"
        };
        audit::record(
            &mut tx,
            actor,
            Change::updated(
                &after.community_id,
                action,
                "registration",
                id,
                registration_json(&before),
                registration_json(&after),
            ),
        )
        .await?;
        if to == RegistrationState::Ended {
            // A cadre who leaves the community stops looking after its households.
            let rows = sqlx::query(&format!("SELECT {PAIRING_COLS} FROM pairings WHERE community_id = $1 AND cadre_id = $2 AND ended_at IS NULL"))
                .bind(&after.community_id)
                .bind(&after.cadre_id)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                let p = pairing_from_row(row)?;
                self.end_pairing_in(&mut tx, actor, p, "registration ended")
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(after)
    }

    pub async fn list_registrations(
        &self,
        community_id: &str,
        cadre_id: &str,
        state: Option<RegistrationState>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Registration>, String)> {
        let sql = format!(
            "SELECT {REGISTRATION_COLS} FROM registrations WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR cadre_id = $2) \
             AND ($3 = '' OR state = $3) AND id > $4 ORDER BY id LIMIT $5"
        );
        let state = state.map(|s| s.as_str()).unwrap_or_default();
        fetch_page(
            &self.db,
            &sql,
            vec![community_id.into(), cadre_id.into(), state.into()],
            page,
            registration_from_row,
            |r| &r.id,
        )
        .await
    }
}
