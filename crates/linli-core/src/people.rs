//! A client of the people service for the other services: does a household
//! exist, is a cadre actively registered here, which unit is a cadre in. Every call
//! carries the caller's identity and trace context; a people service that
//! cannot be reached makes the calling RPC fail with UNAVAILABLE before
//! anything is written.
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::{Actor, Error, Result};
use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

#[derive(Clone)]
pub struct People {
    client: PeopleServiceClient<Channel>,
}

impl People {
    /// A client that connects on first use, so a service starts even while people is down.
    pub fn connect_lazy(addr: &str, timeout: Duration) -> anyhow::Result<People> {
        let channel = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| anyhow::anyhow!("people address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .connect_lazy();
        Ok(People {
            client: PeopleServiceClient::new(channel),
        })
    }

    pub fn from_channel(channel: Channel) -> People {
        People {
            client: PeopleServiceClient::new(channel),
        }
    }

    /// The raw client, for listing (the demo seed reads households and cadres).
    pub fn client(&self) -> PeopleServiceClient<Channel> {
        self.client.clone()
    }

    fn request<T>(actor: &Actor, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        actor.to_metadata(req.metadata_mut());
        crate::telemetry::inject_context(req.metadata_mut());
        req
    }

    pub async fn household(&self, actor: &Actor, id: &str) -> Result<pb::Household> {
        let req = Self::request(
            actor,
            pb::GetHouseholdRequest {
                household_id: id.to_owned(),
                view: 0,
            },
        );
        let resp = self
            .client
            .clone()
            .get_household(req)
            .await
            .map_err(|s| map_status(s, "household", id))?;
        resp.into_inner()
            .household
            .ok_or_else(|| Error::not_found("household", id))
    }

    /// The community with this exact name (for tools and demo data, which know communities by name).
    pub async fn community_named(&self, actor: &Actor, name: &str) -> Result<pb::Place> {
        let req = Self::request(
            actor,
            pb::ListPlacesRequest {
                kind: pb::PlaceKind::Community as i32,
                page_size: 500,
                ..Default::default()
            },
        );
        let places = self
            .client
            .clone()
            .list_places(req)
            .await
            .map_err(|s| map_status(s, "community", name))?
            .into_inner()
            .places;
        places
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::not_found("community", name))
    }

    /// The community with this id; NOT_FOUND when there is no such community.
    pub async fn community(&self, actor: &Actor, id: &str) -> Result<pb::Place> {
        let req = Self::request(
            actor,
            pb::GetPlaceRequest {
                place_id: id.to_owned(),
            },
        );
        let resp = self
            .client
            .clone()
            .get_place(req)
            .await
            .map_err(|s| map_status(s, "community", id))?;
        match resp.into_inner().place {
            Some(p) if p.kind == pb::PlaceKind::Community as i32 => Ok(p),
            _ => Err(Error::not_found("community", id)),
        }
    }

    /// The households of a community at `min_care_level` or above (rank 1–4; 0 for all),
    /// as (id, care level rank), read page by page.
    pub async fn households(
        &self,
        actor: &Actor,
        community_id: &str,
        min_care_level: i32,
    ) -> Result<Vec<(String, i32)>> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let req = Self::request(
                actor,
                pb::ListHouseholdsRequest {
                    community_id: community_id.to_owned(),
                    min_care_level,
                    page_size: 500,
                    page_token,
                    ..Default::default()
                },
            );
            let resp = self
                .client
                .clone()
                .list_households(req)
                .await
                .map_err(|s| map_status(s, "community", community_id))?
                .into_inner();
            out.extend(resp.households.into_iter().map(|h| (h.id, h.care_level)));
            if resp.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = resp.next_page_token;
        }
    }

    pub async fn is_registered(
        &self,
        actor: &Actor,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<bool> {
        let req = Self::request(
            actor,
            pb::CheckRegistrationRequest {
                cadre_id: cadre_id.to_owned(),
                community_id: community_id.to_owned(),
            },
        );
        let resp = self
            .client
            .clone()
            .check_registration(req)
            .await
            .map_err(|s| map_status(s, "cadre", cadre_id))?;
        Ok(resp.into_inner().registered)
    }

    pub async fn cadre(&self, actor: &Actor, id: &str) -> Result<pb::Cadre> {
        let req = Self::request(
            actor,
            pb::GetCadreRequest {
                cadre_id: id.to_owned(),
            },
        );
        let resp = self
            .client
            .clone()
            .get_cadre(req)
            .await
            .map_err(|s| map_status(s, "cadre", id))?;
        resp.into_inner()
            .cadre
            .ok_or_else(|| Error::not_found("cadre", id))
    }

    pub async fn unit(&self, actor: &Actor, id: &str) -> Result<pb::Unit> {
        let req = Self::request(
            actor,
            pb::GetUnitRequest {
                unit_id: id.to_owned(),
            },
        );
        let resp = self
            .client
            .clone()
            .get_unit(req)
            .await
            .map_err(|s| map_status(s, "unit", id))?;
        resp.into_inner()
            .unit
            .ok_or_else(|| Error::not_found("unit", id))
    }
}

/// What a people error means for the caller.
fn map_status(s: Status, what: &'static str, id: &str) -> Error {
    match s.code() {
        Code::NotFound => Error::not_found(what, id),
        Code::InvalidArgument => Error::invalid(format!("{what}_id"), s.message().to_owned()),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::ResourceExhausted => {
            tracing::warn!(code = ?s.code(), message = s.message(), "people service unavailable");
            Error::Unavailable(
                "the people service is unavailable; nothing was changed, retry later".into(),
            )
        }
        _ => Error::Internal(anyhow::anyhow!("people service: {s}")),
    }
}
