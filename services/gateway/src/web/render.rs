//! The pages' HTML (maud escapes every value). Plain, server-rendered, one
//! stylesheet and one small script for live updates; charts are SVG.
use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use linli_core::Role;
use linli_proto::gateway::v1 as pb;
use linli_proto::issues::v1 as ipb;

use super::Lang;
use super::charts::{self, Bar};
use super::pages::CommunityData;
use super::session::Signed;

/// A timestamp as people read it here (China Standard Time).
fn when(ts: Option<&prost_types::Timestamp>) -> String {
    match ts {
        Some(t) if t.seconds != 0 => linli_core::time::to_datetime(linli_core::time::micros(t))
            .with_timezone(&linli_core::time::china_standard_time())
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        _ => "—".into(),
    }
}

fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(6)..).unwrap_or(id)
}

fn pct(rate: Option<&ipb::Rate>) -> String {
    match rate {
        Some(r) if r.denominator > 0 => format!("{:.0}%", r.value * 100.0),
        _ => "—".into(),
    }
}

pub(crate) fn layout(lang: Lang, title: &str, signed: Option<&Signed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.html()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("邻里", "linli")) }
                link rel="stylesheet" href="/static/linli.css";
            }
            body {
                header.top {
                    a.brand href="/" { (lang.t("邻里 · 社区治理", "linli · community work")) }
                    nav {
                        @if let Some(s) = signed {
                            @if s.identity.community_id.is_empty() && s.role() != Role::Resident {
                                a href="/county" { (lang.t("全县", "County")) }
                            }
                            span.who { (s.identity.username) " · " (role_name(lang, s.role())) }
                        }
                        a.lang href={ "?lang=" (lang.other().code()) } {
                            (lang.t("English", "中文"))
                        }
                        @if let Some(s) = signed {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { (lang.t("退出", "Log out")) }
                            }
                        }
                    }
                }
                (body)
            }
        }
    }
}

fn role_name(lang: Lang, role: Role) -> &'static str {
    match role {
        Role::Admin => lang.t("管理员", "Admin"),
        Role::Supervisor => lang.t("督查", "Supervisor"),
        Role::CommunityWorker => lang.t("社区工作人员", "Community worker"),
        Role::Cadre => lang.t("下沉干部", "Cadre"),
        Role::Resident => lang.t("居民", "Resident"),
    }
}

pub fn error_page(lang: Lang, status: StatusCode, message: &str) -> axum::response::Html<String> {
    let title = match status {
        StatusCode::NOT_FOUND => lang.t("找不到", "Not found"),
        StatusCode::FORBIDDEN => lang.t("无权查看", "Not allowed"),
        StatusCode::SERVICE_UNAVAILABLE => lang.t("暂时无法访问", "Unavailable"),
        StatusCode::GATEWAY_TIMEOUT => lang.t("响应超时", "Took too long"),
        _ => lang.t("出错了", "Something went wrong"),
    };
    axum::response::Html(
        layout(
            lang,
            title,
            None,
            html! {
                main.narrow {
                    h1 { (status.as_u16()) " " (title) }
                    p { (message) }
                    p { a href="/" { (lang.t("返回首页", "Back to the start")) } }
                }
            },
        )
        .into_string(),
    )
}

pub fn login(lang: Lang, nonce: &str, error: Option<&str>) -> Markup {
    layout(
        lang,
        lang.t("登录", "Log in"),
        None,
        html! {
            main.narrow {
                h1 { (lang.t("登录", "Log in")) }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="nonce" value=(nonce);
                    label { (lang.t("用户名", "Username"))
                        input #username type="text" name="username" autocomplete="username" required autofocus; }
                    label { (lang.t("密码", "Password"))
                        input #password type="password" name="password" autocomplete="current-password" required; }
                    button #login type="submit" { (lang.t("登录", "Log in")) }
                }
            }
        },
    )
}

/// Parts that failed or were late. Those the person may not see by policy
/// (a resident's view leaves out visits and deliveries) are not news to them.
fn missing(lang: Lang, parts: &[pb::MissingPart]) -> Markup {
    let parts: Vec<&pb::MissingPart> = parts
        .iter()
        .filter(|m| m.code != "PERMISSION_DENIED")
        .collect();
    html! {
        @if !parts.is_empty() {
            div.missing role="status" {
                (lang.t("以下部分暂缺：", "Not shown for now: "))
                @for (i, m) in parts.iter().enumerate() {
                    @if i > 0 { ", " }
                    span title=(m.reason) { (m.part) " (" (m.code) ")" }
                }
            }
        }
    }
}

fn figure(label: &str, value: impl std::fmt::Display, class: &str, id: &str) -> Markup {
    html! {
        div class={ "figure " (class) } {
            span.value id=(id) { (value) }
            span.label { (label) }
        }
    }
}

pub fn community(lang: Lang, signed: &Signed, data: &CommunityData) -> Markup {
    let d = &data.dashboard;
    let title = if d.community_name.is_empty() {
        short(&d.community_id).to_owned()
    } else {
        d.community_name.clone()
    };
    layout(
        lang,
        &title,
        Some(signed),
        html! {
            main {
                h1 {
                    (title)
                    span #live-status.live title=(lang.t("实时更新", "Live updates")) { "●" }
                }
                div #live data-src={ "/c/" (d.community_id) "/live" } data-events={ "/c/" (d.community_id) "/events" } {
                    (community_live(lang, data))
                }
            }
            script src="/static/live.js" {}
        },
    )
}

/// The part of a community page that live updates replace.
pub fn community_live(lang: Lang, data: &CommunityData) -> Markup {
    let d = &data.dashboard;
    let people = d.people.clone().unwrap_or_default();
    let issues = d.issues.clone().unwrap_or_default();
    let stats = d.issue_statistics.clone().unwrap_or_default();
    let logistics = d.logistics.clone().unwrap_or_default();
    let report = d.logistics_report.clone().unwrap_or_default();
    let compliance = d.visit_compliance.clone().unwrap_or_default();
    let name = |id: &str| -> String {
        data.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| short(id).to_owned())
    };
    // In the order an issue moves through them.
    let open_states: Vec<Bar> = [
        "reported",
        "acknowledged",
        "claimed",
        "in_progress",
        "reopened",
    ]
    .iter()
    .filter_map(|key| stats.by_state.iter().find(|c| c.key == *key))
    .map(|c| Bar {
        label: lang.state_key(&c.key).to_owned(),
        value: i64::from(c.count),
        class: if c.key == "reopened" { "warn" } else { "" },
    })
    .collect();
    let marks: Vec<Bar> = stats
        .open_by_three_most
        .iter()
        .map(|c| Bar {
            label: lang.three_most_key(&c.key).to_owned(),
            value: i64::from(c.count),
            class: if c.key == "none" { "" } else { "warn" },
        })
        .collect();
    let weeks: Vec<(String, i64, i64)> = stats
        .weeks
        .iter()
        .map(|w| {
            let start = when(w.week_start.as_ref());
            (
                start.get(5..10).unwrap_or("").to_owned(),
                i64::from(w.reported),
                i64::from(w.resolved),
            )
        })
        .collect();
    let on_time = i64::from(compliance.vulnerable_households - compliance.overdue_households);
    let roster = d.roster_next_24h.clone().unwrap_or_default();
    // The hour the strip starts at, as the clock on the wall reads it.
    let local_secs = linli_core::time::now_micros() / 1_000_000
        + i64::from(linli_core::time::china_standard_time().local_minus_utc());
    let first_hour = (local_secs / 3600).rem_euclid(24) as u32;
    html! {
        (missing(lang, &d.missing))
        section.figures {
            (figure(lang.t("户数", "Households"), people.households, "", "fig-households"))
            (figure(lang.t("居民", "Residents"), people.residents, "", "fig-residents"))
            (figure(lang.t("重点关爱户", "Vulnerable households"), people.vulnerable_households, "", "fig-vulnerable"))
            (figure(lang.t("报到干部", "Cadres registered"), people.cadres_registered, "", "fig-cadres"))
            (figure(lang.t("待办问题", "Open issues"), issues.open_issues, "", "fig-open"))
            (figure(lang.t("逾期问题", "Overdue issues"), issues.overdue_issues, if issues.overdue_issues > 0 { "bad" } else { "" }, "fig-overdue"))
            (figure(lang.t("已解决", "Resolved"), issues.resolved_issues, "good", "fig-resolved"))
            (figure(lang.t("响应率", "Response rate"), pct(stats.response_rate.as_ref()), "", "fig-response"))
            (figure(lang.t("解决率", "Resolution rate"), pct(stats.resolution_rate.as_ref()), "", "fig-resolution"))
            (figure(lang.t("满意率", "Satisfaction"), pct(stats.satisfaction_rate.as_ref()), "", "fig-satisfaction"))
            (figure(lang.t("待配送", "Deliveries pending"), logistics.deliveries_pending, "", "fig-pending"))
            (figure(lang.t("卡点缺岗(24小时)", "Checkpoint gap hours (24 h)"), logistics.checkpoint_gap_hours, if logistics.checkpoint_gap_hours > 0 { "bad" } else { "" }, "fig-gaps"))
            // Only for those who may read the funds; absent, the figure is not shown.
            @if let Some(fen) = logistics.funds_balance_fen {
                (figure(lang.t("资金余额(元)", "Funds balance (yuan)"), format!("{:.2}", fen as f64 / 100.0), "", "fig-funds"))
            }
        }
        section.charts {
            (charts::bars(lang.t("待办问题（按状态）", "Open issues by state"), &open_states))
            (charts::bars(lang.t("待办问题（按三最）", "Open issues by 三最 mark"), &marks))
            (charts::weekly(lang.t("每周上报与解决", "Reported and resolved per week"), &weeks, (lang.t("上报", "reported"), lang.t("解决", "resolved"))))
            (charts::share(
                lang.t("走访按时", "Visits on time"),
                on_time,
                i64::from(compliance.vulnerable_households),
                &format!("{} / {} {}", on_time, compliance.vulnerable_households, lang.t("户按时走访", "households visited on time")),
                "bad",
            ))
            @for b in &report.batches {
                (charts::share(
                    &format!("{} {}", lang.t("配送批次", "Batch"), b.name),
                    i64::from(b.delivered),
                    i64::from(b.delivered + b.pending),
                    &format!("{} / {} {}", b.delivered, b.delivered + b.pending, lang.t("户已送达", "households delivered")),
                    "rest",
                ))
            }
            figure.chart {
                figcaption { (lang.t("卡点值守（未来24小时，红色为缺岗）", "Checkpoints, next 24 h (red: short of staff)")) }
                @for c in &roster.coverage {
                    @let label = d.checkpoints.iter().find(|p| p.id == c.checkpoint_id).map(|p| p.name.clone()).unwrap_or_else(|| short(&c.checkpoint_id).to_owned());
                    @let gaps = hour_gaps(&roster, &c.checkpoint_id, c.hours.max(0) as usize);
                    (charts::hours(&label, &gaps, first_hour))
                }
                @if roster.coverage.is_empty() { p.empty { "—" } }
            }
        }
        section {
            h2 { (lang.t("逾期问题", "Overdue issues")) }
            @if d.overdue_issues.is_empty() {
                p.empty { (lang.t("没有逾期问题。", "Nothing is overdue.")) }
            } @else {
                table #overdue {
                    thead { tr {
                        th { (lang.t("问题", "Issue")) }
                        th { (lang.t("认领人", "Claimed by")) }
                        th { (lang.t("期限", "Deadline")) }
                        th { (lang.t("逾期", "Late by")) }
                    } }
                    tbody {
                        @for o in &d.overdue_issues {
                            @let i = o.issue.clone().unwrap_or_default();
                            tr {
                                td { a href={ "/issues/" (i.id) } { (i.title) } }
                                td { @match &i.claim {
                                    Some(c) if !c.cadre_id.is_empty() => (name(&c.cadre_id)),
                                    Some(c) if !c.unit_id.is_empty() => (name(&c.unit_id)),
                                    _ => span.muted { (lang.t("无人认领", "nobody")) },
                                } }
                                td { (if o.deadline == ipb::DeadlineKind::Response as i32 { lang.t("响应", "response") } else { lang.t("解决", "resolution") }) }
                                td.bad { (lang.duration(o.overdue_seconds)) }
                            }
                        }
                    }
                }
                @let all = d.issues.as_ref().map_or(0, |s| s.overdue_issues.max(0) as usize);
                @if all > d.overdue_issues.len() {
                    p.muted #overdue-more { (format!(
                        "{} {} / {}",
                        lang.t("最逾期的", "The most overdue:"),
                        d.overdue_issues.len(),
                        all
                    )) }
                }
            }
        }
        section {
            h2 { (lang.t("逾期未走访的重点户", "Vulnerable households overdue for a visit")) }
            @if compliance.entries.is_empty() {
                p.empty { (lang.t("都已按时走访。", "Every one was visited on time.")) }
            } @else {
                table #visits {
                    thead { tr {
                        th { (lang.t("住址", "Address")) }
                        th { (lang.t("关爱等级", "Care level")) }
                        th { (lang.t("上次走访", "Last visit")) }
                        th { (lang.t("逾期", "Late by")) }
                    } }
                    tbody {
                        @for e in &compliance.entries {
                            tr {
                                td { a href={ "/h/" (e.household_id) } { (e.address) } }
                                td { (lang.care_level(e.care_level)) }
                                td { (when(e.last_visit_at.as_ref())) }
                                td.bad { (lang.duration(e.overdue_seconds)) }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { (lang.t("待办问题", "Open issues")) " (" (issues.open_issues) ")" }
            table #open-issues {
                thead { tr {
                    th { (lang.t("问题", "Issue")) }
                    th { (lang.t("类别", "Category")) }
                    th { (lang.t("状态", "State")) }
                    th { (lang.t("上报时间", "Reported")) }
                } }
                tbody {
                    @for i in &d.open_issues {
                        tr {
                            td { a href={ "/issues/" (i.id) } { (i.title) }
                                @if i.three_most != 0 { " " span.mark { (lang.three_most(i.three_most)) } } }
                            td { (lang.category(i.category)) }
                            td { (lang.state(i.state)) }
                            td { (when(i.reported_at.as_ref())) }
                        }
                    }
                }
            }
        }
    }
}

/// Which of a checkpoint's next hours are short of staff.
fn hour_gaps(
    roster: &linli_proto::logistics::v1::GetRosterReportResponse,
    checkpoint_id: &str,
    hours: usize,
) -> Vec<bool> {
    let hour = 3_600;
    let from = (linli_core::time::now_micros() / 1_000_000) / hour * hour;
    let mut cells = vec![false; hours.min(24)];
    for g in roster
        .gaps
        .iter()
        .filter(|g| g.checkpoint_id == checkpoint_id)
    {
        let (Some(a), Some(b)) = (&g.starts_at, &g.ends_at) else {
            continue;
        };
        for (i, cell) in cells.iter_mut().enumerate() {
            let t = from + i as i64 * hour;
            if t >= a.seconds && t < b.seconds {
                *cell = true;
            }
        }
    }
    cells
}

/// How the county table is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountySort {
    pub by: &'static str,
    pub desc: bool,
}

const COUNTY_COLUMNS: &[&str] = &[
    "name",
    "households",
    "vulnerable",
    "open",
    "overdue",
    "resolved",
    "pending",
    "gaps",
    "score",
];

impl CountySort {
    pub fn parse(by: Option<&str>, desc: bool) -> CountySort {
        match by.and_then(|b| COUNTY_COLUMNS.iter().find(|c| **c == b)) {
            Some(by) => CountySort { by, desc },
            None => CountySort {
                by: "score",
                desc: true,
            },
        }
    }
}

pub fn county(
    lang: Lang,
    signed: &Signed,
    o: &pb::GetCountyOverviewResponse,
    sort: CountySort,
) -> Markup {
    let score = |id: &str| {
        o.ranking
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.score)
            .unwrap_or(0.0)
    };
    let mut rows: Vec<&pb::CommunityFigures> = o.communities.iter().collect();
    let key = |c: &pb::CommunityFigures| -> f64 {
        let p = c.people.clone().unwrap_or_default();
        let i = c.issues.clone().unwrap_or_default();
        let l = c.logistics.clone().unwrap_or_default();
        match sort.by {
            "households" => f64::from(p.households),
            "vulnerable" => f64::from(p.vulnerable_households),
            "open" => f64::from(i.open_issues),
            "overdue" => f64::from(i.overdue_issues),
            "resolved" => f64::from(i.resolved_issues),
            "pending" => f64::from(l.deliveries_pending),
            "gaps" => f64::from(l.checkpoint_gap_hours),
            _ => score(&c.community_id),
        }
    };
    if sort.by == "name" {
        rows.sort_by(|a, b| a.name.cmp(&b.name));
    } else {
        rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
    }
    if sort.desc {
        rows.reverse();
    }
    let head = |col: &'static str, label: &str| {
        let desc = sort.by == col && !sort.desc;
        html! {
            th { a href={ "?sort=" (col) @if desc { "&desc=1" } } {
                (label) @if sort.by == col { (if sort.desc { " ▼" } else { " ▲" }) }
            } }
        }
    };
    layout(
        lang,
        lang.t("全县", "County"),
        Some(signed),
        html! {
            main {
                h1 { (lang.t("全县社区概览", "The county's communities")) }
                (missing(lang, &o.missing))
                table #county {
                    thead { tr {
                        (head("name", lang.t("社区", "Community")))
                        (head("households", lang.t("户数", "Households")))
                        (head("vulnerable", lang.t("重点户", "Vulnerable")))
                        (head("open", lang.t("待办", "Open")))
                        (head("overdue", lang.t("逾期", "Overdue")))
                        (head("resolved", lang.t("已解决", "Resolved")))
                        (head("pending", lang.t("待配送", "Pending deliveries")))
                        (head("gaps", lang.t("缺岗小时", "Gap hours")))
                        (head("score", lang.t("按时解决（置信下限）", "On time (Wilson)")))
                    } }
                    tbody {
                        @for c in &rows {
                            @let p = c.people.clone().unwrap_or_default();
                            @let i = c.issues.clone().unwrap_or_default();
                            @let l = c.logistics.clone().unwrap_or_default();
                            tr {
                                td { a href={ "/c/" (c.community_id) } { (c.name) } }
                                td { (p.households) }
                                td { (p.vulnerable_households) }
                                td { (i.open_issues) }
                                td class=(if i.overdue_issues > 0 { "bad" } else { "" }) { (i.overdue_issues) }
                                td { (i.resolved_issues) }
                                td { (l.deliveries_pending) }
                                td class=(if l.checkpoint_gap_hours > 0 { "bad" } else { "" }) { (l.checkpoint_gap_hours) }
                                td { (format!("{:.2}", score(&c.community_id))) }
                            }
                        }
                    }
                }
                p.muted { (lang.t(
                    "排名按按时解决率的威尔逊置信下限：问题少的社区不会因运气排在前面。",
                    "Ranked by the Wilson lower bound of the on-time resolution rate, so a community with few issues cannot top it by luck."
                )) }
            }
        },
    )
}

pub fn issue(lang: Lang, signed: &Signed, i: &ipb::Issue, timeline: &[ipb::IssueEvent]) -> Markup {
    layout(
        lang,
        &i.title,
        Some(signed),
        html! {
            main {
                p { a href={ "/c/" (i.community_id) } { "← " (lang.t("社区", "Community")) } }
                h1 { (i.title) }
                dl.facts {
                    dt { (lang.t("状态", "State")) } dd #issue-state { (lang.state(i.state)) }
                    dt { (lang.t("类别", "Category")) } dd { (lang.category(i.category)) }
                    @if i.three_most != 0 { dt { (lang.t("三最", "三最 mark")) } dd { (lang.three_most(i.three_most)) } }
                    dt { (lang.t("上报时间", "Reported")) } dd { (when(i.reported_at.as_ref())) }
                    dt { (lang.t("响应期限", "Respond by")) } dd { (when(i.response_due_at.as_ref())) }
                    dt { (lang.t("解决期限", "Resolve by")) } dd { (when(i.resolution_due_at.as_ref())) }
                    @if let Some(l) = &i.location { @if !l.text.is_empty() { dt { (lang.t("地点", "Where")) } dd { (l.text) } } }
                    @if !i.household_id.is_empty() { dt { (lang.t("上报户", "Household")) } dd { a href={ "/h/" (i.household_id) } { (short(&i.household_id)) } } }
                    @if i.rating > 0 { dt { (lang.t("评价", "Rating")) } dd { (i.rating) " / 5 " (i.rating_comment) } }
                }
                @if !i.description.is_empty() { p.description { (i.description) } }
                h2 { (lang.t("办理经过", "Timeline")) }
                ol #timeline.timeline {
                    @for e in timeline {
                        li {
                            time { (when(e.at.as_ref())) }
                            " " strong { (lang.event(e.kind)) }
                            @if e.to_state != 0 { " → " (lang.state(e.to_state)) }
                            @if !e.note.is_empty() { div.note { (e.note) } }
                        }
                    }
                }
            }
        },
    )
}

pub fn household(lang: Lang, signed: &Signed, p: &pb::GetHouseholdProfileResponse) -> Markup {
    let h = p.household.clone().unwrap_or_default();
    let household = h.household.clone().unwrap_or_default();
    let care = h.care.clone().unwrap_or_default();
    layout(
        lang,
        &household.address,
        Some(signed),
        html! {
            main {
                @if signed.role() != Role::Resident {
                    p { a href={ "/c/" (household.community_id) } { "← " (lang.t("社区", "Community")) } }
                }
                h1 #household-address { (household.address) }
                (missing(lang, &p.missing))
                dl.facts {
                    dt { (lang.t("关爱等级", "Care level")) } dd { (lang.care_level(care.level)) }
                    @if care.visit_every_days > 0 { dt { (lang.t("走访周期", "Visit every")) } dd { (care.visit_every_days) " " (lang.t("天", "days")) } }
                    @if !care.reason.is_empty() { dt { (lang.t("原因", "Why")) } dd { (lang.care_reason(&care.reason)) } }
                }
                h2 { (lang.t("家庭成员", "Members")) }
                table #members {
                    thead { tr { th { (lang.t("姓名", "Name")) } th { (lang.t("年龄", "Age")) } th { (lang.t("电话", "Phone")) } th { (lang.t("情况", "Needs")) } } }
                    tbody {
                        @for r in h.residents.iter().filter(|r| r.removed_at.is_none()) {
                            tr {
                                td { (r.name) }
                                td { (r.age) }
                                td { (r.phone) }
                                td { @for (i, t) in r.tags.iter().enumerate() { @if i > 0 { "、" } (lang.tag(*t)) } }
                            }
                        }
                    }
                }
                h2 { (lang.t("包户联系人", "Carers")) }
                ul {
                    @for c in h.pairings.iter().filter(|c| c.ended_at.is_none()) {
                        li {
                            (c.member_name) " "
                            // A whole number is one this person may call: a tap does.
                            @if !c.member_phone.is_empty() && !c.member_phone.contains('*') {
                                a.call href={ "tel:" (c.member_phone) } { (c.member_phone) }
                            } @else { (c.member_phone) }
                        }
                    }
                }
                @if !p.recent_visits.is_empty() {
                    h2 { (lang.t("最近走访", "Recent visits")) }
                    ul #visits { @for v in &p.recent_visits { li { (when(v.at.as_ref())) " " (v.note) } } }
                }
                h2 { (lang.t("反映的问题", "Issues reported")) }
                ul #household-issues {
                    @for i in &p.issues {
                        li { a href={ "/issues/" (i.id) } { (i.title) } " · " (lang.state(i.state)) }
                    }
                    @if p.issues.is_empty() { li.muted { "—" } }
                }
                @if !p.deliveries.is_empty() {
                    h2 { (lang.t("物资配送", "Deliveries")) }
                    ul #deliveries { @for d in &p.deliveries { li { (when(d.delivered_at.as_ref())) " · " (short(&d.batch_id)) } } }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_overdue(listed: usize, all: i32) -> CommunityData {
        let late = |n: usize| ipb::OverdueIssue {
            issue: Some(ipb::Issue {
                id: format!("issue-{n}"),
                title: format!("楼道灯坏了 {n}"),
                ..Default::default()
            }),
            overdue_seconds: 3600,
            ..Default::default()
        };
        CommunityData {
            dashboard: pb::GetCommunityDashboardResponse {
                issues: Some(ipb::GetCommunitySummaryResponse {
                    overdue_issues: all,
                    ..Default::default()
                }),
                overdue_issues: (0..listed).map(late).collect(),
                ..Default::default()
            },
            names: Default::default(),
        }
    }

    /// A dashboard lists the most overdue issues; when the summary counts
    /// more than it lists, the page says how many of how many it shows.
    #[test]
    fn the_overdue_list_says_when_it_shows_only_the_most_overdue() {
        let page = community_live(Lang::En, &with_overdue(2, 5)).into_string();
        assert_eq!(page.matches("/issues/issue-").count(), 2);
        assert!(page.contains("id=\"overdue-more\""), "{page}");
        assert!(page.contains("The most overdue: 2 / 5"), "{page}");

        let page = community_live(Lang::Zh, &with_overdue(3, 3)).into_string();
        assert_eq!(page.matches("/issues/issue-").count(), 3);
        assert!(!page.contains("overdue-more"), "all are listed: {page}");
        assert!(!page.contains("最逾期的"), "{page}");
    }
}
