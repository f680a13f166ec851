//! Reading requests: one by id, or a community's window of them, newest first.
use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

use linli_core::time::now_micros;
use linli_proto::issues::v1 as ipb;

use super::format::{self, Format};
use super::{Answer, DEFAULT_DAYS, GeoError, LIST_LIMIT, SERVICES, issues, reader, service_code};
use crate::web::{Lang, State};

fn rfc3339(ts: Option<&prost_types::Timestamp>) -> Value {
    match ts {
        Some(t) if t.seconds != 0 => Value::String(
            linli_core::time::to_datetime(linli_core::time::micros(t))
                .with_timezone(&linli_core::time::china_standard_time())
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        ),
        _ => Value::Null,
    }
}

/// An issue as a GeoReport request.
fn request_json(i: &ipb::Issue) -> Value {
    use ipb::IssueState as S;
    let state = S::try_from(i.state).unwrap_or(S::Unspecified);
    let open = matches!(
        state,
        S::Reported | S::Acknowledged | S::Claimed | S::InProgress | S::Reopened
    );
    let mut notes = format!("{} / {}", Lang::Zh.state(i.state), Lang::En.state(i.state));
    if !i.reject_reason.is_empty() {
        notes.push_str(&format!(": {}", i.reject_reason));
    }
    if !i.duplicate_of.is_empty() {
        notes.push_str(&format!(": {}", i.duplicate_of));
    }
    let updated = [
        &i.closed_at,
        &i.resolved_at,
        &i.responded_at,
        &i.reported_at,
    ]
    .into_iter()
    .flatten()
    .max_by_key(|t| (t.seconds, t.nanos));
    let location = i.location.clone().unwrap_or_default();
    let has_point = location.latitude != 0.0 || location.longitude != 0.0;
    json!({
        "service_request_id": i.id,
        "status": if open { "open" } else { "closed" },
        "status_notes": notes,
        "service_name": SERVICES.iter().find(|s| s.1 as i32 == i.category).map_or("其他", |s| s.2),
        "service_code": service_code(i.category),
        "description": i.description,
        "agency_responsible": i.claim.as_ref().map(|c| if c.unit_id.is_empty() { c.cadre_id.clone() } else { c.unit_id.clone() }),
        "service_notice": Value::Null,
        "requested_datetime": rfc3339(i.reported_at.as_ref()),
        "updated_datetime": rfc3339(updated),
        "expected_datetime": if open { rfc3339(i.resolution_due_at.as_ref()) } else { Value::Null },
        "address": location.text,
        "address_id": Value::Null,
        "zipcode": Value::Null,
        "lat": if has_point { json!(location.latitude) } else { Value::Null },
        "long": if has_point { json!(location.longitude) } else { Value::Null },
        "media_url": i.attachments.first().map(|a| a.url.clone()),
    })
}

pub(super) async fn get_request(
    state: &State,
    id: &str,
    params: &HashMap<String, String>,
    f: Format,
) -> Answer {
    let client = reader(state, params).await?;
    let issue = issues(state)
        .get_issue(client.actor.request(ipb::GetIssueRequest {
            issue_id: id.to_owned(),
        }))
        .await?
        .into_inner()
        .issue
        .unwrap_or_default();
    Ok(format::list(
        f,
        StatusCode::OK,
        "service_requests",
        "request",
        vec![request_json(&issue)],
    ))
}

/// A date as the spec's W3C note writes it, in seconds: `2026-11-20` (the
/// day's start, or for `end_date` its last second, China time),
/// `2026-11-20T09:00Z`, or a whole RFC 3339 time.
fn parse_date(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, GeoError> {
    let Some(v) = params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        GeoError::bad(format!(
            "{name} must be a date (2026-11-20) or a date and time (2026-11-20T09:00+08:00, 2026-11-20T01:00:00Z)"
        ))
    };
    if let Ok(day) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let start = day
            .and_hms_opt(0, 0, 0)
            .and_then(|t| {
                t.and_local_timezone(linli_core::time::china_standard_time())
                    .single()
            })
            .ok_or_else(bad)?
            .timestamp();
        return Ok(Some(if name == "end_date" {
            start + 86_399
        } else {
            start
        }));
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(Some(d.timestamp()));
    }
    // Minutes without seconds: `2026-11-20T09:00Z`, `…T09:00+08:00`.
    let (clock, zone) = match v
        .find(['Z', 'z', '+'])
        .or_else(|| v.rfind('-').filter(|i| *i > 10))
    {
        Some(i) => v.split_at(i),
        None => return Err(bad()),
    };
    chrono::DateTime::parse_from_rfc3339(&format!("{clock}:00{zone}"))
        .map(|d| Some(d.timestamp()))
        .map_err(|_| bad())
}

/// The most requests one list reads to answer a page (page × page_size).
const MOST_READ: i64 = 5000;

/// A whole number parameter within `[least, most]`, `default` when absent.
fn whole(
    params: &HashMap<String, String>,
    name: &str,
    default: i64,
    least: i64,
    most: i64,
) -> Result<i64, GeoError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (least..=most).contains(n))
            .ok_or_else(|| {
                GeoError::bad(format!(
                    "{name} must be a whole number from {least} to {most}"
                ))
            }),
    }
}

pub(super) async fn list_requests(
    state: &State,
    params: &HashMap<String, String>,
    f: Format,
) -> Answer {
    let client = reader(state, params).await?;
    // "May be declared multiple times, comma delimited."
    let mut statuses = Vec::new();
    for st in params
        .get("status")
        .map(|s| s.as_str())
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !matches!(st, "open" | "closed") {
            return Err(GeoError::bad("status must be open or closed"));
        }
        statuses.push(st);
    }
    let status = match (statuses.contains(&"open"), statuses.contains(&"closed")) {
        (true, false) => "open",
        (false, true) => "closed",
        _ => "",
    };
    let (page, page_size) = (
        whole(params, "page", 1, 1, i64::MAX)?,
        whole(
            params,
            "page_size",
            i64::from(LIST_LIMIT),
            1,
            i64::from(LIST_LIMIT),
        )?,
    );
    let wanted = page.saturating_mul(page_size);
    if wanted > MOST_READ {
        return Err(GeoError::bad(format!(
            "page {page} of {page_size} reaches past the newest {MOST_READ}: narrow the dates"
        )));
    }
    let (start, end) = (
        parse_date(params, "start_date")?,
        parse_date(params, "end_date")?,
    );
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(GeoError::bad("start_date must not be after end_date"));
    }
    // With no dates, the spec's window: the most recent 90 days.
    let start = match (start, end) {
        (None, None) => Some(now_micros() / 1_000_000 - DEFAULT_DAYS * 86_400),
        (s, _) => s,
    };
    let at = |secs: i64| prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    };
    if let Some(ids) = params.get("service_request_id").filter(|v| !v.is_empty()) {
        let mut out = Vec::new();
        for id in ids.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let found = issues(state)
                .get_issue(client.actor.request(ipb::GetIssueRequest {
                    issue_id: id.to_owned(),
                }))
                .await;
            match found {
                Ok(r) => out.extend(r.into_inner().issue.as_ref().map(request_json)),
                Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => {}
                Err(s) => return Err(s.into()),
            }
        }
        return Ok(format::list(
            f,
            StatusCode::OK,
            "service_requests",
            "request",
            out,
        ));
    }
    let mut categories = Vec::new();
    for code in params
        .get("service_code")
        .map(|c| c.as_str())
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let category = SERVICES
            .iter()
            .find(|s| s.0 == code)
            .map(|s| s.1)
            .ok_or_else(|| {
                GeoError::bad(format!(
                    "service_code {code} is not a known service (see services.json)"
                ))
            })?;
        categories.push(category);
    }
    if categories.is_empty() {
        categories.push(ipb::Category::Unspecified);
    }
    // Newest first, the window read by the issues service itself; several
    // services are read each and merged (ids are in the order reported).
    let mut listed = Vec::new();
    for category in categories {
        let mut token = String::new();
        let mut read = 0;
        loop {
            let page = issues(state)
                .list_issues(client.actor.request(ipb::ListIssuesRequest {
                    community_id: client.community_id.clone(),
                    category: category as i32,
                    open_only: status == "open",
                    page_size: LIST_LIMIT,
                    page_token: token,
                    reported_from: start.map(at),
                    // end_date is the latest moment included.
                    reported_before: end.map(|e| at(e + 1)),
                    newest_first: true,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            read += page.issues.len() as i64;
            listed.extend(page.issues);
            token = page.next_page_token;
            // Closed ones are told apart here, so those are read to the end (within MOST_READ).
            let enough = if status == "closed" {
                MOST_READ
            } else {
                wanted
            };
            if token.is_empty() || read >= enough {
                break;
            }
        }
    }
    listed.sort_by(|a, b| b.id.cmp(&a.id));
    listed.dedup_by(|a, b| a.id == b.id);
    let out: Vec<Value> = listed
        .iter()
        .map(request_json)
        .filter(|r| status.is_empty() || r["status"] == status)
        .skip(((page - 1) * page_size) as usize)
        .take(page_size as usize)
        .collect();
    Ok(format::list(
        f,
        StatusCode::OK,
        "service_requests",
        "request",
        out,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_open_and_closed() {
        let mut i = ipb::Issue {
            state: ipb::IssueState::InProgress as i32,
            ..Default::default()
        };
        assert_eq!(request_json(&i)["status"], "open");
        i.state = ipb::IssueState::Rejected as i32;
        i.reject_reason = "不属于社区事务".into();
        let r = request_json(&i);
        assert_eq!(r["status"], "closed");
        assert!(
            r["status_notes"]
                .as_str()
                .unwrap()
                .contains("不属于社区事务")
        );
    }

    #[test]
    fn dates_as_the_w3c_note_writes_them() {
        let at = |name: &str, v: &str| {
            let p = HashMap::from([(name.to_owned(), v.to_owned())]);
            parse_date(&p, name)
        };
        let day = at("start_date", "2026-11-20").unwrap().unwrap();
        assert_eq!(
            day,
            at("start_date", "2026-11-20T00:00+08:00").unwrap().unwrap()
        );
        assert_eq!(day, at("start_date", "2026-11-19T16:00Z").unwrap().unwrap());
        assert_eq!(
            day,
            at("start_date", "2026-11-19T16:00:00Z").unwrap().unwrap()
        );
        assert_eq!(at("end_date", "2026-11-20").unwrap().unwrap(), day + 86_399);
        assert!(at("start_date", "20 November").is_err());
        assert!(at("start_date", "2026-13-01").is_err());
    }
}
