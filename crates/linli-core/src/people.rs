//! A client of the people service for the other services: does a household
//! exist, is a cadre actively registered here, which unit is a cadre in. Every call
//! carries the caller's identity and trace context; a people service that
//! cannot be reached makes the calling RPC fail with UNAVAILABLE before
//! anything is written — unless what it asks people confirmed within the last
//! minute (communities, and the community of a household, are held that long).
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::{Actor, Error, Result};
use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

#[derive(Clone)]
pub struct People {
    client: PeopleServiceClient<Channel>,
    /// Communities people confirmed lately, by id.
    communities: Recent<pb::Place>,
    /// The community of each household people confirmed lately, by household id.
    household_communities: Recent<String>,
}

/// How long a community or household people confirmed is taken as existing
/// without asking again. Communities and households are not removed in the
/// course of a day's work, and every write still checks the caller's reach itself.
const CONFIRMED_FOR: Duration = Duration::from_secs(60);
/// Past this many, the confirmations older than `CONFIRMED_FOR` are dropped.
const MOST_CONFIRMED: usize = 100_000;

/// What people confirmed lately, by id, each for `CONFIRMED_FOR`.
#[derive(Clone)]
struct Recent<V>(Arc<Mutex<HashMap<String, (Instant, V)>>>);

impl<V: Clone> Recent<V> {
    fn new() -> Self {
        Recent(Arc::default())
    }

    fn get(&self, id: &str) -> Option<V> {
        let held = self.0.lock().expect("people cache lock");
        held.get(id)
            .filter(|(at, _)| at.elapsed() < CONFIRMED_FOR)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, id: &str, v: V) {
        let mut held = self.0.lock().expect("people cache lock");
        if held.len() >= MOST_CONFIRMED {
            held.retain(|_, (at, _)| at.elapsed() < CONFIRMED_FOR);
        }
        held.insert(id.to_owned(), (Instant::now(), v));
    }
}

/// Items asked for per page when reading a whole listing.
const PAGE: i32 = 500;

/// Every item of a listing, page by page: `page` is given each page token
/// (empty first) and answers with the page's items and the next token.
async fn every<T, F, Fut>(mut page: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

/// Waits before each retry of a call the people service could not take.
/// Every call here is a read, so retrying cannot do anything twice; two
/// short retries ride out a people replica restarting without making a
/// caller wait long when people is really down.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(200)];

impl People {
    /// A client that connects on first use, so a service starts even while people is down.
    pub fn connect_lazy(addr: &str, timeout: Duration) -> anyhow::Result<People> {
        let channel = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| anyhow::anyhow!("people address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .connect_lazy();
        Ok(People::from_channel(channel))
    }

    pub fn from_channel(channel: Channel) -> People {
        People {
            client: PeopleServiceClient::new(channel),
            communities: Recent::new(),
            household_communities: Recent::new(),
        }
    }

    /// Calls people with the caller's identity and trace context, retrying
    /// UNAVAILABLE; errors are mapped for the caller, naming `what` and `id`.
    async fn call<M, R, F, Fut>(
        &self,
        actor: &Actor,
        msg: M,
        what: &'static str,
        id: &str,
        rpc: F,
    ) -> Result<R>
    where
        M: Clone,
        F: Fn(PeopleServiceClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<R>, Status>>,
    {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            match rpc(self.client.clone(), actor.request(msg.clone())).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(s) if s.code() == Code::Unavailable => match delays.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => return Err(map_status(s, what, id)),
                },
                Err(s) => return Err(map_status(s, what, id)),
            }
        }
    }

    /// Reads what ended from people every few seconds as `service`, so this
    /// process refuses the tokens of ended logins (see [`crate::ended`]).
    pub fn follow_ended(
        &self,
        keys: &crate::auth::Keys,
        service: &'static str,
    ) -> tokio::task::JoinHandle<()> {
        let (people, signer) = (self.clone(), keys.clone());
        keys.ended().follow(move |since| {
            let (people, actor) = (people.clone(), signer.service_actor(service));
            async move {
                people
                    .call(
                        &actor,
                        pb::ListEndedSessionsRequest { since },
                        "ended sessions",
                        "",
                        |mut c, req| async move { c.list_ended_sessions(req).await },
                    )
                    .await
                    .map(|r| r.ended)
            }
        })
    }

    pub async fn household(&self, actor: &Actor, id: &str) -> Result<pb::Household> {
        let msg = pb::GetHouseholdRequest {
            household_id: id.to_owned(),
            view: 0,
        };
        let resp = self
            .call(actor, msg, "household", id, |mut c, r| async move {
                c.get_household(r).await
            })
            .await?;
        resp.household
            .ok_or_else(|| Error::not_found("household", id))
    }

    /// The community with this exact name (for tools and demo data, which know communities by name).
    pub async fn community_named(&self, actor: &Actor, name: &str) -> Result<pb::Place> {
        self.communities(actor)
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::not_found("community", name))
    }

    /// Every community, in the order of the place tree.
    pub async fn communities(&self, actor: &Actor) -> Result<Vec<pb::Place>> {
        every(|page_token| async move {
            let msg = pb::ListPlacesRequest {
                kind: pb::PlaceKind::Community as i32,
                page_size: PAGE,
                page_token,
                ..Default::default()
            };
            let r = self
                .call(actor, msg, "community", "", |mut c, r| async move {
                    c.list_places(r).await
                })
                .await?;
            Ok((r.places, r.next_page_token))
        })
        .await
    }

    /// A community's households at `min_care_level` or above (rank 1–4; 0 for all).
    pub async fn household_list(
        &self,
        actor: &Actor,
        community_id: &str,
        min_care_level: i32,
    ) -> Result<Vec<pb::Household>> {
        every(|page_token| async move {
            let msg = pb::ListHouseholdsRequest {
                community_id: community_id.to_owned(),
                min_care_level,
                page_size: PAGE,
                page_token,
                ..Default::default()
            };
            let r = self
                .call(
                    actor,
                    msg,
                    "community",
                    community_id,
                    |mut c, r| async move { c.list_households(r).await },
                )
                .await?;
            Ok((r.households, r.next_page_token))
        })
        .await
    }

    /// A community's cadres.
    pub async fn cadres(&self, actor: &Actor, community_id: &str) -> Result<Vec<pb::Cadre>> {
        every(|page_token| async move {
            let msg = pb::ListCadresRequest {
                community_id: community_id.to_owned(),
                page_size: PAGE,
                page_token,
                ..Default::default()
            };
            let r = self
                .call(
                    actor,
                    msg,
                    "community",
                    community_id,
                    |mut c, r| async move { c.list_cadres(r).await },
                )
                .await?;
            Ok((r.cadres, r.next_page_token))
        })
        .await
    }

    /// The community with this id; NOT_FOUND when there is no such community.
    /// One people confirmed within the last minute is not asked again.
    pub async fn community(&self, actor: &Actor, id: &str) -> Result<pb::Place> {
        if let Some(place) = self.communities.get(id) {
            return Ok(place);
        }
        let msg = pb::GetPlaceRequest {
            place_id: id.to_owned(),
        };
        let resp = self
            .call(actor, msg, "community", id, |mut c, r| async move {
                c.get_place(r).await
            })
            .await?;
        match resp.place {
            Some(p) if p.kind == pb::PlaceKind::Community as i32 => {
                self.communities.put(id, p.clone());
                Ok(p)
            }
            _ => Err(Error::not_found("community", id)),
        }
    }

    /// Whether `community`, and `household` if given, were confirmed lately:
    /// checking them now would ask people nothing.
    pub fn confirmed(&self, community: &str, household: Option<&str>) -> bool {
        self.communities.get(community).is_some()
            && household.is_none_or(|h| self.household_communities.get(h).is_some())
    }

    /// The community a household belongs to; NOT_FOUND when there is no such
    /// household (or it is out of the caller's reach). One people confirmed
    /// within the last minute is not asked again.
    pub async fn household_community(&self, actor: &Actor, id: &str) -> Result<String> {
        if let Some(community) = self.household_communities.get(id) {
            return Ok(community);
        }
        let community = self.household(actor, id).await?.community_id;
        self.household_communities.put(id, community.clone());
        Ok(community)
    }

    /// The households of a community at `min_care_level` or above (rank 1–4; 0 for all),
    /// as (id, care level rank).
    pub async fn households(
        &self,
        actor: &Actor,
        community_id: &str,
        min_care_level: i32,
    ) -> Result<Vec<(String, i32)>> {
        Ok(self
            .household_list(actor, community_id, min_care_level)
            .await?
            .into_iter()
            .map(|h| (h.id, h.care_level))
            .collect())
    }

    pub async fn is_registered(
        &self,
        actor: &Actor,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<bool> {
        let msg = pb::CheckRegistrationRequest {
            cadre_id: cadre_id.to_owned(),
            community_id: community_id.to_owned(),
        };
        let resp = self
            .call(actor, msg, "cadre", cadre_id, |mut c, r| async move {
                c.check_registration(r).await
            })
            .await?;
        Ok(resp.registered)
    }

    /// The refusal for a cadre not actively registered with a community, naming
    /// both by name as well as id (the names as far as people can give them).
    pub async fn not_registered(&self, actor: &Actor, cadre_id: &str, community_id: &str) -> Error {
        let cadre = match self.cadre(actor, cadre_id).await {
            Ok(c) => format!("{} ({cadre_id})", c.name),
            Err(_) => cadre_id.to_owned(),
        };
        let community = match self.community(actor, community_id).await {
            Ok(p) => format!("{} ({community_id})", p.name),
            Err(_) => community_id.to_owned(),
        };
        Error::FailedPrecondition(format!(
            "cadre {cadre} is not actively registered with community {community} (双报到)"
        ))
    }

    pub async fn cadre(&self, actor: &Actor, id: &str) -> Result<pb::Cadre> {
        let msg = pb::GetCadreRequest {
            cadre_id: id.to_owned(),
        };
        let resp = self
            .call(actor, msg, "cadre", id, |mut c, r| async move {
                c.get_cadre(r).await
            })
            .await?;
        resp.cadre.ok_or_else(|| Error::not_found("cadre", id))
    }

    pub async fn unit(&self, actor: &Actor, id: &str) -> Result<pb::Unit> {
        let msg = pb::GetUnitRequest {
            unit_id: id.to_owned(),
        };
        let resp = self
            .call(actor, msg, "unit", id, |mut c, r| async move {
                c.get_unit(r).await
            })
            .await?;
        resp.unit.ok_or_else(|| Error::not_found("unit", id))
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
