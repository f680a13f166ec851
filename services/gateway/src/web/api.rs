//! The JSON API the dashboard's data also comes as (docs/HTTP.md): the same
//! views, in protobuf's canonical JSON mapping (camelCase fields, enum names,
//! RFC 3339 times), for scripts and browser apps that do not speak gRPC-Web.
//! A caller is the session cookie's person or `Authorization: Bearer <token>`
//! from `AuthService.Login`. Read-only, so there is nothing to forge.
use std::sync::LazyLock;

use axum::extract::{FromRequestParts, Path, State as Extract};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::json;

use linli_core::Actor;
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::gateway_service_server::GatewayService;

use super::pages::issue_with_timeline;
use super::session::{self, Signed};
use super::{State, WebError, to_views};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(linli_proto::FILE_DESCRIPTOR_SET)
        .expect("linli's descriptor set is built with it")
});

/// A message as protobuf JSON, named by its full proto name.
pub fn to_json(msg: &impl prost::Message, full_name: &str) -> serde_json::Value {
    let Some(desc) = POOL.get_message_by_name(full_name) else {
        return json!({ "error": format!("no message {full_name}") });
    };
    match DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) {
        Ok(m) => serde_json::to_value(&m).unwrap_or_default(),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// A JSON API caller: a bearer token, or the session cookie.
pub struct Caller(pub Actor);

impl FromRequestParts<State> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    ApiError(WebError::BadRequest(
                        "authorization must be `Bearer <token>`".into(),
                    ))
                })?;
            return session::actor_from_token(state, token.trim())
                .map(Caller)
                .map_err(|s| ApiError(unauthenticated(s.message())));
        }
        let Some(cookie) = session::cookie(&parts.headers, session::COOKIE) else {
            return Err(ApiError(unauthenticated(
                "sign in, or send `authorization: Bearer <token>` from AuthService.Login",
            )));
        };
        session::resolve(state, cookie)
            .await
            .map(|s: Signed| Caller(s.actor))
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => ApiError(unauthenticated(s.message())),
                _ => ApiError(s.into()),
            })
    }
}

fn unauthenticated(message: &str) -> WebError {
    // Kept apart from SignIn, which redirects a browser.
    WebError::Forbidden(format!("unauthenticated: {message}"))
}

/// An API failure as JSON: `{"error": {"status": 404, "message": "…"}}`.
pub struct ApiError(WebError);

impl From<WebError> for ApiError {
    fn from(e: WebError) -> ApiError {
        ApiError(e)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        ApiError(s.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            WebError::SignIn => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(m) if m.starts_with("unauthenticated: ") => {
                StatusCode::UNAUTHORIZED
            }
            e => e.status(),
        };
        let body = json!({ "error": { "status": status.as_u16(), "message": self.0.message() } });
        (status, axum::Json(body)).into_response()
    }
}

type Answer = Result<axum::Json<serde_json::Value>, ApiError>;

/// Who the caller is, as the gateway reads them.
pub async fn me(Caller(actor): Caller) -> Answer {
    Ok(axum::Json(json!({
        "id": actor.id,
        "role": actor.role.as_str(),
        "household": actor.household,
        "cadre": actor.cadre,
        "countyWide": actor.is_county(),
    })))
}

pub async fn dashboard(
    Extract(state): Extract<State>,
    Caller(actor): Caller,
    Path(community_id): Path<String>,
) -> Answer {
    let d = state
        .views
        .get_community_dashboard(to_views(
            &actor,
            pb::GetCommunityDashboardRequest {
                community_id,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    Ok(axum::Json(to_json(
        &d,
        "linli.gateway.v1.GetCommunityDashboardResponse",
    )))
}

pub async fn county(Extract(state): Extract<State>, Caller(actor): Caller) -> Answer {
    let o = state
        .views
        .get_county_overview(to_views(&actor, pb::GetCountyOverviewRequest {}))
        .await?
        .into_inner();
    Ok(axum::Json(to_json(
        &o,
        "linli.gateway.v1.GetCountyOverviewResponse",
    )))
}

pub async fn household(
    Extract(state): Extract<State>,
    Caller(actor): Caller,
    Path(household_id): Path<String>,
) -> Answer {
    let p = state
        .views
        .get_household_profile(to_views(
            &actor,
            pb::GetHouseholdProfileRequest { household_id },
        ))
        .await?
        .into_inner();
    Ok(axum::Json(to_json(
        &p,
        "linli.gateway.v1.GetHouseholdProfileResponse",
    )))
}

pub async fn issue(
    Extract(state): Extract<State>,
    Caller(actor): Caller,
    Path(issue_id): Path<String>,
) -> Answer {
    let (issue, timeline) = issue_with_timeline(&state, &actor, &issue_id).await?;
    Ok(axum::Json(json!({
        "issue": to_json(&issue, "linli.issues.v1.Issue"),
        "timeline": timeline
            .iter()
            .map(|e| to_json(e, "linli.issues.v1.IssueEvent"))
            .collect::<Vec<_>>(),
    })))
}
