//! Open311 GeoReport v2 (JSON and XML) over the issues service, so civic
//! reporting apps can report problems into a community and follow them:
//! - services: the issue categories (`service_code` = `road`, `drainage`, …);
//! - requests: issues, `open` while someone still has to act, `closed` once
//!   resolved, verified, rejected or merged, with the state in `status_notes`.
//!
//! Reporting needs an `api_key`; each key belongs to one community and reports
//! as `open311:<name>` in the audit trail. Reading needs none ("Requires API
//! Key: No"): a community's requests are public as GeoReport shows them (no
//! contact details), asked for by `jurisdiction_id` (the community's id or
//! code) or through a key. Errors come in GeoReport's format and the asked
//! one, `[{"code": 400, "description": "…"}]`, with the same HTTP status, and
//! a refused report writes nothing.
mod format;
mod read;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, RawForm, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;

use linli_core::auth::Claims;
use linli_core::time::now_micros;
use linli_core::{Actor, Db, Role};
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;

use super::{Lang, State, WebError, session};
use crate::auth::hash;
use format::Format;

/// How long the token an Open311 call is made with lives.
const TOKEN_TTL: Duration = Duration::from_secs(120);
/// The most requests one list answers (GeoReport's suggested limit is 1000).
const LIST_LIMIT: i32 = 500;
/// The window of a list asked for without dates (GeoReport v2: "the most recent 90 days").
const DEFAULT_DAYS: i64 = 90;

/// Categories as GeoReport services, with both names.
const SERVICES: &[(&str, ipb::Category, &str, &str)] = &[
    ("road", ipb::Category::Road, "道路", "Roads and paths"),
    (
        "drainage",
        ipb::Category::Drainage,
        "排水",
        "Drains and flooding",
    ),
    (
        "sanitation",
        ipb::Category::Sanitation,
        "环境卫生",
        "Rubbish and cleanliness",
    ),
    (
        "public_safety",
        ipb::Category::PublicSafety,
        "公共安全",
        "Public safety",
    ),
    (
        "housing_repair",
        ipb::Category::HousingRepair,
        "房屋维修",
        "Housing repairs",
    ),
    (
        "epidemic",
        ipb::Category::Epidemic,
        "疫情防控",
        "Epidemic control",
    ),
    (
        "livelihood",
        ipb::Category::Livelihood,
        "民生保障",
        "Livelihood and welfare",
    ),
    ("other", ipb::Category::Other, "其他", "Anything else"),
];

/// A GeoReport error answer.
#[derive(Debug)]
pub struct GeoError(StatusCode, String);

impl GeoError {
    fn bad(m: impl Into<String>) -> GeoError {
        GeoError(StatusCode::BAD_REQUEST, m.into())
    }
}

impl GeoError {
    fn not_found(m: impl Into<String>) -> GeoError {
        GeoError(StatusCode::NOT_FOUND, m.into())
    }

    fn in_format(self, format: Format) -> Response {
        format::error(format, self.0, &self.1)
    }
}

impl IntoResponse for GeoError {
    fn into_response(self) -> Response {
        self.in_format(Format::Json)
    }
}

/// An answer in `format`, errors included.
fn respond(format: Format, answer: Answer) -> Response {
    answer.unwrap_or_else(|e| e.in_format(format))
}

/// Any other path under /open311: GeoReport's 404, not a web page.
pub async fn unknown() -> Response {
    GeoError::not_found("no such Open311 resource: see /open311/v2/discovery.json").into_response()
}

/// `GET /open311/v2/{services,requests,discovery}.{json,xml}`.
pub async fn get_top(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match Format::of(&file) {
        Some(("services", f)) => services(f, &headers, &params),
        Some(("requests", f)) => respond(f, read::list_requests(&state, &params, f).await),
        Some(("discovery", f)) => discovery(f),
        Some((_, f)) => {
            GeoError::not_found(format!("no such Open311 resource: {file}")).in_format(f)
        }
        None => unknown().await,
    }
}

/// `POST /open311/v2/requests.{json,xml}`: the form, and any field sent in
/// the query string too (clients send `api_key` there).
pub async fn post_top(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    RawForm(body): RawForm,
) -> Response {
    match Format::of(&file) {
        Some(("requests", f)) => {
            let mut params = query;
            params.extend(form_urlencoded::parse(&body).into_owned());
            respond(f, post_request(&state, &headers, params, f).await)
        }
        Some((_, f)) => GeoError(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{file} takes no POST: reports go to requests.json"),
        )
        .in_format(f),
        None => unknown().await,
    }
}

/// `GET /open311/v2/services/{code}.{json,xml}`: a service's definition. No
/// service asks for more than the standard fields, so none has attributes.
pub async fn get_definition(Path(file): Path<String>) -> Response {
    let Some((code, f)) = Format::of(&file) else {
        return unknown().await;
    };
    if !SERVICES.iter().any(|s| s.0 == code) {
        return GeoError::not_found(format!(
            "service_code {code} is not a known service (see services.json)"
        ))
        .in_format(f);
    }
    format::one(
        f,
        "service_definition",
        json!({"service_code": code, "attributes": []}),
    )
}

/// `GET /open311/v2/requests/{id}.{json,xml}`.
pub async fn get_one(
    Extract(state): Extract<State>,
    Path(file): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match Format::of(&file) {
        Some((id, f)) => respond(f, read::get_request(&state, id, &params, f).await),
        None => unknown().await,
    }
}

/// What this endpoint is, for clients that discover it (GeoReport's discovery).
fn discovery(f: Format) -> Response {
    format::one(
        f,
        "discovery",
        json!({
            "changeset": "2026-12-05T00:00:00Z",
            "contact": "the county's community affairs office (see the deployment's README)",
            "key_service": "ask the community's worker for an api_key (linli-gateway open311-key)",
            "endpoints": [{
                "specification": "http://wiki.open311.org/GeoReport_v2",
                "url": "/open311/v2",
                "changeset": "2026-12-05T00:00:00Z",
                "type": "production",
                "formats": ["application/json", "text/xml"],
            }],
            "jurisdiction": "a community: its id or its administrative code (e.g. 421224100005)",
        }),
    )
}

impl From<tonic::Status> for GeoError {
    fn from(s: tonic::Status) -> GeoError {
        // The same mapping as every web answer; Open311 has no login page, so a
        // refused identity is 403.
        let e = WebError::from(s);
        let status = match e {
            WebError::SignIn => StatusCode::FORBIDDEN,
            ref e => e.status(),
        };
        GeoError(status, e.message().to_owned())
    }
}

type Answer = Result<Response, GeoError>;

/// A new API key for an app reporting into `community_id`; only its hash is kept.
pub async fn add_key(db: &Db, name: &str, community_id: &str) -> anyhow::Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        anyhow::bail!("an Open311 client needs a name of 1 to 64 bytes");
    }
    let key = session::random_token();
    sqlx::query(
        "INSERT INTO open311_keys (key_hash, name, community_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash(&key))
    .bind(name)
    .bind(community_id)
    .bind(now_micros())
    .execute(&db.writer)
    .await?;
    Ok(key)
}

/// The app a key belongs to, acting in its community.
struct Client {
    actor: Actor,
    community_id: String,
    /// Names the key (not the app, whose name two communities may share):
    /// the key's reports are deduplicated and limited under it.
    key_id: String,
}

/// Reports one key may send in a minute.
pub const REPORTS_PER_MINUTE: u32 = 60;

/// Reports counted per key over the current minute, in this gateway process.
#[derive(Debug, Default)]
pub struct ReportRate {
    minutes: std::sync::Mutex<HashMap<String, (std::time::Instant, u32)>>,
}

impl ReportRate {
    /// Counts a report by `key_id`; how long to wait when it is one too many.
    fn take(&self, key_id: &str, per_minute: u32) -> Option<Duration> {
        let now = std::time::Instant::now();
        let minute = Duration::from_secs(60);
        let mut all = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() > 10_000 {
            all.retain(|_, (since, _)| now.duration_since(*since) < minute);
        }
        let (since, n) = all.entry(key_id.to_owned()).or_insert((now, 0));
        if now.duration_since(*since) >= minute {
            (*since, *n) = (now, 0);
        }
        if *n >= per_minute {
            return Some(minute.saturating_sub(now.duration_since(*since)));
        }
        *n += 1;
        None
    }
}

async fn client(state: &State, params: &HashMap<String, String>) -> Result<Client, GeoError> {
    let key = params
        .get("api_key")
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| GeoError(StatusCode::FORBIDDEN, "api_key is required".into()))?;
    let row = sqlx::query(
        "SELECT name, community_id FROM open311_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash(key))
    .fetch_optional(&state.db.pool)
    .await
    .map_err(|e| GeoError::from(tonic::Status::from(linli_core::Error::from(e))))?
    .ok_or_else(|| GeoError(StatusCode::FORBIDDEN, "api_key is not valid".into()))?;
    let name: String = row.try_get("name").unwrap_or_default();
    let community_id: String = row.try_get("community_id").unwrap_or_default();
    let key_id = hash(key)[..16].to_owned();
    if let Some(j) = params
        .get("jurisdiction_id")
        .map(|j| j.trim())
        .filter(|j| !j.is_empty())
        && j != community_id
        && jurisdiction(state, j).await? != community_id
    {
        return Err(GeoError::not_found(format!(
            "jurisdiction_id {j} is not this key's community"
        )));
    }
    acting(state, &format!("open311:{name}"), community_id, key_id)
}

/// A reader: the key's app, or without a key anyone, in the community
/// `jurisdiction_id` names. What either reads is GeoReport's public view.
async fn reader(state: &State, params: &HashMap<String, String>) -> Result<Client, GeoError> {
    if params.get("api_key").is_some_and(|k| !k.trim().is_empty()) {
        return client(state, params).await;
    }
    let given = params
        .get("jurisdiction_id")
        .map(|j| j.trim())
        .filter(|j| !j.is_empty())
        .ok_or_else(|| {
            GeoError::bad(
                "jurisdiction_id is required without an api_key: the community's id or code",
            )
        })?;
    let community_id = jurisdiction(state, given).await?;
    acting(state, "open311:public", community_id, "public".into())
}

/// A client acting as `who` in `community_id`, with a short token of its own.
fn acting(
    state: &State,
    who: &str,
    community_id: String,
    key_id: String,
) -> Result<Client, GeoError> {
    let claims = Claims::new(who, Role::CommunityWorker, TOKEN_TTL).community(&community_id);
    let token = state.keys.sign(&claims);
    let actor = session::actor_from_token(state, &token)?;
    Ok(Client {
        actor,
        community_id,
        key_id,
    })
}

/// The community a `jurisdiction_id` names: its id, or its administrative code.
async fn jurisdiction(state: &State, given: &str) -> Result<String, GeoError> {
    let all = crate::communities(&state.people, &state.keys, state.call_timeout).await?;
    crate::find_community(&all, given)
        .map(|p| p.id.clone())
        .ok_or_else(|| {
            GeoError::not_found(format!(
                "jurisdiction_id {given} is no community here: give its id or its code"
            ))
        })
}

fn issues(state: &State) -> IssuesServiceClient<crate::backend::Backend> {
    IssuesServiceClient::new(state.issues.clone())
}

fn service_code(category: i32) -> &'static str {
    SERVICES
        .iter()
        .find(|s| s.1 as i32 == category)
        .map_or("other", |s| s.0)
}

fn services(f: Format, headers: &HeaderMap, q: &HashMap<String, String>) -> Response {
    let lang = Lang::of(headers, q.get("locale").map(|l| l.get(..2).unwrap_or(l)));
    let list: Vec<Value> = SERVICES
        .iter()
        .map(|(code, _, zh, en)| {
            json!({
                "service_code": code,
                "service_name": if lang == Lang::En { *en } else { *zh },
                "description": format!("{zh} / {en}"),
                "metadata": false,
                "type": "realtime",
                "keywords": "",
                "group": "linli",
            })
        })
        .collect();
    format::list(f, StatusCode::OK, "services", "service", list)
}

fn parse_coordinate(
    params: &HashMap<String, String>,
    name: &str,
    limit: f64,
) -> Result<Option<f64>, GeoError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x.abs() <= limit => Ok(Some(x)),
            _ => Err(GeoError::bad(format!(
                "{name} must be a number between -{limit} and {limit}"
            ))),
        },
    }
}

/// An idempotency key under the api_key it came with, so that two apps (in
/// two communities, or one) never share keys whatever their names. Within
/// the 128 bytes every service takes: a long key is replaced by its digest.
fn scoped_key(key_id: &str, key: &str) -> String {
    let scoped = format!("{key_id}:{key}");
    if scoped.len() <= 128 {
        scoped
    } else {
        format!(
            "{key_id}:sha256:{}",
            hex::encode(Sha256::digest(key.as_bytes()))
        )
    }
}

/// The first line of a description, shortened, as the issue's title.
fn title_from(description: &str) -> String {
    let line = description.lines().next().unwrap_or("").trim();
    let mut title: String = line.chars().take(40).collect();
    if line.chars().count() > 40 {
        title.push('…');
    }
    title
}

async fn post_request(
    state: &State,
    headers: &HeaderMap,
    params: HashMap<String, String>,
    f: Format,
) -> Answer {
    let client = client(state, &params).await?;
    if let Some(wait) = state.open311_rate.take(&client.key_id, REPORTS_PER_MINUTE) {
        let mut resp = GeoError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this api_key sent more than {REPORTS_PER_MINUTE} reports in a minute; try again in {} s",
                wait.as_secs().max(1)
            ),
        )
        .in_format(f);
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(wait.as_secs().max(1)),
        );
        return Ok(resp);
    }
    let code = params
        .get("service_code")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| GeoError::bad("service_code is required"))?;
    let category = SERVICES
        .iter()
        .find(|s| s.0 == code)
        .map(|s| s.1)
        .ok_or_else(|| {
            GeoError::not_found(format!(
                "service_code {code} is not a known service (see services.json)"
            ))
        })?;
    let media = params
        .get("media_url")
        .map(|u| u.trim())
        .filter(|u| !u.is_empty());
    // A photo may carry the report on its own (the spec's description is optional).
    let description = match params.get("description").map(|d| d.trim()) {
        Some(d) if !d.is_empty() => d,
        _ if media.is_some() => "（见照片）/ (see the photo)",
        _ => return Err(GeoError::bad("description is required (or a media_url)")),
    };
    if description.chars().count() > 4000 {
        return Err(GeoError::bad("description must be at most 4000 characters"));
    }
    let lat = parse_coordinate(&params, "lat", 90.0)?;
    let long = parse_coordinate(&params, "long", 180.0)?;
    let address = params.get("address_string").map(|a| a.trim()).unwrap_or("");
    if lat.is_some() != long.is_some() {
        return Err(GeoError::bad("lat and long go together"));
    }
    if lat.is_none() && address.is_empty() {
        return Err(GeoError::bad(
            "a location is required: lat and long, or address_string",
        ));
    }
    // Contact details are kept apart from the description, which residents,
    // cadres and other apps read: whole only for those who call back.
    let field = |k: &str| params.get(k).map(|v| v.trim()).unwrap_or("");
    let name = [field("first_name"), field("last_name")]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let contact = ipb::ReporterContact {
        name,
        phone: field("phone").to_owned(),
        email: field("email").to_owned(),
    };
    // A client's retry is the same report: its own key if it sends one, or
    // the report's contents that day (the same lamp broken again next month
    // is a new report). Either is scoped by the api_key.
    let day = now_micros() / 86_400_000_000;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.get("idempotency_key").cloned())
        .unwrap_or_else(|| {
            let mut h = Sha256::new();
            for part in [
                code,
                description,
                address,
                &format!("{lat:?}{long:?}"),
                &format!("{contact:?}"),
                &day.to_string(),
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            format!("open311:{}", &hex::encode(h.finalize())[..32])
        });
    let key = scoped_key(&client.key_id, &key);
    let mut req = client.actor.request(ipb::ReportIssueRequest {
        idempotency_key: key,
        community_id: client.community_id.clone(),
        title: title_from(description),
        description: description.to_owned(),
        reporter_contact: Some(contact),
        category: category as i32,
        location: Some(ipb::Location {
            text: address.to_owned(),
            latitude: lat.unwrap_or(0.0),
            longitude: long.unwrap_or(0.0),
        }),
        source: ipb::Source::CivicApp as i32,
        attachments: media
            .map(|url| ipb::Attachment {
                url: url.to_owned(),
                mime_type: media_type_of(url).to_owned(),
                phase: ipb::PhotoPhase::Before as i32,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    });
    req.set_timeout(state.call_timeout);
    let issue = issues(state)
        .report_issue(req)
        .await?
        .into_inner()
        .issue
        .unwrap_or_default();
    let body = json!({
        "service_request_id": issue.id,
        "service_notice": "已收到，社区将在响应期限内受理 / Received; the community will respond by the deadline",
        "account_id": Value::Null,
    });
    Ok(format::list(
        f,
        StatusCode::CREATED,
        "service_requests",
        "request",
        vec![body],
    ))
}

/// The media type a `media_url` names by its ending; Open311 sends no type,
/// and the photo itself is elsewhere (an unknown ending is kept as bytes).
fn media_type_of(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let ending = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ending.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_url_is_typed_by_its_ending() {
        assert_eq!(media_type_of("https://x.cn/a/b.JPG?size=2"), "image/jpeg");
        assert_eq!(media_type_of("https://x.cn/p.png#top"), "image/png");
        assert_eq!(
            media_type_of("https://x.cn/photo"),
            "application/octet-stream"
        );
        assert_eq!(
            media_type_of("https://x.cn.example/"),
            "application/octet-stream"
        );
    }

    #[test]
    fn every_category_is_a_service_once() {
        let mut codes: Vec<&str> = SERVICES.iter().map(|s| s.0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 8);
        for s in SERVICES {
            assert_eq!(service_code(s.1 as i32), s.0);
        }
    }

    #[test]
    fn keys_are_scoped_by_the_api_key_and_stay_short() {
        assert_eq!(scoped_key("k1", "abc"), "k1:abc");
        assert_ne!(scoped_key("k1", "abc"), scoped_key("k2", "abc"));
        let long = "x".repeat(128);
        assert!(scoped_key("0123456789abcdef", &long).len() <= 128);
        assert_ne!(
            scoped_key("0123456789abcdef", &long),
            scoped_key("0123456789abcdef", &format!("{long}y"))
        );
    }

    #[test]
    fn a_key_sends_a_minutes_worth_then_waits() {
        let rate = ReportRate::default();
        for _ in 0..3 {
            assert!(rate.take("k1", 3).is_none());
        }
        let wait = rate.take("k1", 3).expect("the fourth waits");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert!(
            rate.take("k2", 3).is_none(),
            "another key has its own minute"
        );
    }

    #[test]
    fn titles_are_the_first_line_shortened() {
        assert_eq!(title_from("路灯不亮\n三号楼前"), "路灯不亮");
        let long = "很".repeat(50);
        assert_eq!(title_from(&long).chars().count(), 41);
    }
}
