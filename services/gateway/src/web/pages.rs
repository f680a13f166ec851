//! The dashboard's pages: login and logout, a community (live), the county,
//! an issue, a household. Each handler asks the views or the services as the
//! signed-in person and hands what came back to `render`.
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, Form, Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use linli_core::Role;
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::gateway_service_server::GatewayService;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

use super::session::{self, Signed};
use super::{Lang, State, WebError, render, to_views};
use crate::client::ClientAddr;

type Page = Result<Response, WebError>;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub lang: Option<String>,
    pub sort: Option<String>,
    pub desc: Option<String>,
}

/// The page's language; a `?lang=` switch is remembered in a cookie.
pub(crate) fn lang_of(headers: &HeaderMap, q: &PageQuery) -> Lang {
    Lang::of(headers, q.lang.as_deref())
}

/// An HTML answer, remembering a language switch.
pub(crate) fn html(lang: Lang, q: &PageQuery, body: maud::Markup) -> Response {
    let mut resp = Html(body.into_string()).into_response();
    if q.lang.is_some() {
        resp.headers_mut().insert(
            header::SET_COOKIE,
            session::set_cookie(
                super::i18n::COOKIE,
                lang.code(),
                Duration::from_secs(365 * 86_400),
                false,
            ),
        );
    }
    resp
}

pub async fn home(signed: Result<Signed, WebError>) -> Response {
    match signed {
        Ok(s) => Redirect::to(&home_of(&s)).into_response(),
        Err(WebError::SignIn) => Redirect::to("/login").into_response(),
        Err(e) => e.into_response(),
    }
}

/// Where a person starts: a resident at their household, county roles at the
/// county, everyone else at their community.
pub(crate) fn home_of(s: &Signed) -> String {
    if s.role() == Role::Resident {
        format!("/h/{}", s.identity.household_id)
    } else if s.identity.community_id.is_empty() {
        "/county".into()
    } else {
        format!("/c/{}", s.identity.community_id)
    }
}

pub async fn login_form(headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let lang = lang_of(&headers, &q);
    login_page(lang, &q, StatusCode::OK, None)
}

fn login_page(lang: Lang, q: &PageQuery, status: StatusCode, error: Option<&str>) -> Response {
    let nonce = session::random_token();
    let mut resp = html(lang, q, render::login(lang, &nonce, error));
    *resp.status_mut() = status;
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            session::LOGIN_COOKIE,
            &nonce,
            Duration::from_secs(3600),
            false,
        ),
    );
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    nonce: String,
}

pub async fn login(
    Extract(state): Extract<State>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Page {
    let q = PageQuery::default();
    let lang = lang_of(&headers, &q);
    // The form must come from our own login page (double-submit value).
    let Some(nonce) = session::login_nonce(&headers, &form.nonce) else {
        return Ok(login_page(
            lang,
            &q,
            StatusCode::FORBIDDEN,
            Some(lang.t(
                "登录表单已过期，请重试。",
                "The login form expired; please try again.",
            )),
        ));
    };
    if form.username.trim().is_empty() || form.password.is_empty() {
        return Ok(login_page(
            lang,
            &q,
            StatusCode::BAD_REQUEST,
            Some(lang.t("请输入用户名和密码。", "Enter your username and password.")),
        ));
    }
    let account = match state
        .auth
        .check_password(form.username, form.password, &client.to_string())
        .await
    {
        Ok(a) => a,
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            return Ok(login_page(
                lang,
                &q,
                StatusCode::UNAUTHORIZED,
                Some(lang.t("用户名或密码错误。", "Wrong username or password.")),
            ));
        }
        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
            return Ok(login_page(
                lang,
                &q,
                StatusCode::TOO_MANY_REQUESTS,
                Some(s.message()).map(|_| {
                    lang.t(
                        "登录失败次数过多，请稍后再试。",
                        "Too many failed logins; try again later.",
                    )
                }),
            ));
        }
        Err(s) => return Err(s.into()),
    };
    if account.must_change_password {
        return Ok(super::password::form(lang, nonce, &account.username, None));
    }
    Ok(session::signed_in(&state, &account).await?)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    Extract(state): Extract<State>,
    signed: Signed,
    Form(form): Form<CsrfForm>,
) -> Page {
    signed.check_csrf(&form.csrf)?;
    session::end(&state, &signed).await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            session::COOKIE,
            "",
            Duration::ZERO,
            state.sessions.secure_cookies,
        ),
    );
    Ok(resp)
}

/// Everything a community page shows.
pub(crate) struct CommunityData {
    pub dashboard: pb::GetCommunityDashboardResponse,
    /// Cadre and unit ids to names, for who claimed what.
    pub names: HashMap<String, String>,
}

pub(crate) async fn community_data(
    state: &State,
    signed: &Signed,
    community_id: String,
) -> Result<CommunityData, WebError> {
    let (mut cadres_client, mut units_client) = (
        PeopleServiceClient::new(state.people.clone()),
        PeopleServiceClient::new(state.people.clone()),
    );
    let timeout = state.call_timeout;
    let (dashboard, cadres, units) = tokio::join!(
        state.views.get_community_dashboard(to_views(
            &signed.actor,
            pb::GetCommunityDashboardRequest {
                community_id: community_id.clone(),
                ..Default::default()
            }
        )),
        tokio::time::timeout(
            timeout,
            cadres_client.list_cadres(signed.actor.request(ppb::ListCadresRequest {
                community_id: community_id.clone(),
                page_size: 500,
                ..Default::default()
            }))
        ),
        tokio::time::timeout(
            timeout,
            units_client.list_units(signed.actor.request(ppb::ListUnitsRequest {
                page_size: 500,
                ..Default::default()
            }))
        ),
    );
    let dashboard = dashboard?.into_inner();
    let mut names = HashMap::new();
    // Names are a nicety: without them the page shows ids.
    if let Ok(Ok(c)) = cadres {
        for c in c.into_inner().cadres {
            names.insert(c.id, c.name);
        }
    }
    if let Ok(Ok(u)) = units {
        for u in u.into_inner().units {
            names.insert(u.id, u.name);
        }
    }
    Ok(CommunityData { dashboard, names })
}

pub async fn community(
    state: Extract<State>,
    signed: Signed,
    path: Path<String>,
    headers: HeaderMap,
    q: Query<PageQuery>,
) -> Page {
    community_page(state, signed, path, headers, q, false).await
}

/// The live part of a community page, fetched again when something changes.
pub async fn community_live(
    state: Extract<State>,
    signed: Signed,
    path: Path<String>,
    headers: HeaderMap,
    q: Query<PageQuery>,
) -> Page {
    community_page(state, signed, path, headers, q, true).await
}

async fn community_page(
    Extract(state): Extract<State>,
    signed: Signed,
    Path(community_id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    live_part: bool,
) -> Page {
    let lang = lang_of(&headers, &q);
    let data = community_data(&state, &signed, community_id).await?;
    if !live_part {
        return Ok(html(lang, &q, render::community(lang, &signed, &data)));
    }
    let mut resp = Html(render::community_live(lang, &data).into_string()).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    Ok(resp)
}

/// A community's changes as Server-Sent Events, from now on: one event per
/// change (its kind and the stream cursor), so the page knows to refresh.
pub async fn community_events(
    Extract(state): Extract<State>,
    signed: Signed,
    Path(community_id): Path<String>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, WebError> {
    // Held by the stream, so the place is given back when the page goes.
    let slot = state
        .streams
        .take(&signed.session_hash, crate::streams::PER_SESSION)?;
    let mut req = to_views(
        &signed.actor,
        pb::WatchCommunityRequest {
            community_id,
            after_cursor: String::new(),
            from_now: true,
        },
    );
    // Counted here, per page session; not again as a gRPC caller's.
    req.extensions_mut().insert(crate::streams::Counted);
    let stream = state.views.watch_community(req).await?.into_inner();
    let mut stopping = state.stop.subscribe();
    let (views, actor) = (state.views.clone(), signed.actor.clone());
    let events = stream
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(move |item| {
            let _ = &slot;
            // Told now: the live part this page fetches next is read after it.
            views.told(&actor);
            async move {
                let r = item.ok()?;
                use pb::watch_community_response::Event as E;
                let kind = match r.event? {
                    E::Issue(e) => format!("issue:{}", e.issue_id),
                    E::Logistics(e) => format!("{}:{}", e.entity, e.entity_id),
                };
                Some(Ok(Event::default().id(r.cursor).event("change").data(kind)))
            }
        })
        .take_until(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

pub async fn county(
    Extract(state): Extract<State>,
    signed: Signed,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Page {
    let lang = lang_of(&headers, &q);
    let overview = state
        .views
        .get_county_overview(to_views(&signed.actor, pb::GetCountyOverviewRequest {}))
        .await?
        .into_inner();
    let sort = render::CountySort::parse(q.sort.as_deref(), q.desc.is_some());
    Ok(html(
        lang,
        &q,
        render::county(lang, &signed, &overview, sort),
    ))
}

pub async fn issue(
    Extract(state): Extract<State>,
    signed: Signed,
    Path(issue_id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Page {
    let lang = lang_of(&headers, &q);
    let (issue, timeline) = issue_with_timeline(&state, &signed.actor, &issue_id).await?;
    Ok(html(
        lang,
        &q,
        render::issue(lang, &signed, &issue, &timeline),
    ))
}

pub(crate) async fn issue_with_timeline(
    state: &State,
    actor: &linli_core::Actor,
    issue_id: &str,
) -> Result<(ipb::Issue, Vec<ipb::IssueEvent>), WebError> {
    let mut a = IssuesServiceClient::new(state.issues.clone());
    let mut b = a.clone();
    let (issue, timeline) = tokio::join!(
        a.get_issue(actor.request(ipb::GetIssueRequest {
            issue_id: issue_id.to_owned(),
        })),
        b.get_timeline(actor.request(ipb::GetTimelineRequest {
            issue_id: issue_id.to_owned(),
        })),
    );
    let issue = issue?
        .into_inner()
        .issue
        .ok_or_else(|| WebError::NotFound("no such issue".into()))?;
    Ok((issue, timeline?.into_inner().events))
}

pub async fn household(
    Extract(state): Extract<State>,
    signed: Signed,
    Path(household_id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Page {
    let lang = lang_of(&headers, &q);
    let profile = state
        .views
        .get_household_profile(to_views(
            &signed.actor,
            pb::GetHouseholdProfileRequest { household_id },
        ))
        .await?
        .into_inner();
    Ok(html(lang, &q, render::household(lang, &signed, &profile)))
}

/// The stylesheet and the one script, built into the binary.
pub async fn static_file(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "linli.css" => (include_str!("../../static/linli.css"), "text/css"),
        "live.js" => (include_str!("../../static/live.js"), "text/javascript"),
        _ => return WebError::NotFound("no such file".into()).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
