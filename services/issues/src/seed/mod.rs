//! Demo issues for 双泉社区, read from the people service's demo data: the
//! story's road (2020-11-25) and sewer, then a realistic spread over the last
//! four months — most fixed and confirmed, some waiting for the residents,
//! some being worked on, a few fresh, overdue, rejected or duplicated. Every
//! issue is keyed, and only new ones are walked, so seeding again changes nothing.
use chrono::{FixedOffset, TimeZone};

use linli_core::Actor;
use linli_core::idempotency::IdemKey;
use linli_core::time::now_micros;
use linli_proto::people::v1 as ppb;

use crate::People;
use crate::domain::{Action, Category, Claimant, IssueState, Source, ThreeMost};
use crate::store::{IssueRecord, Move, NewIssue, Store};

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;

const TITLES: &[(&str, Category)] = &[
    ("楼道堆放杂物", Category::Sanitation),
    ("下水道堵塞", Category::Drainage),
    ("路灯不亮", Category::PublicSafety),
    ("化粪池满溢", Category::Drainage),
    ("屋顶漏水", Category::HousingRepair),
    ("垃圾清运不及时", Category::Sanitation),
    ("路面坑洼积水", Category::Road),
    ("楼梯扶手松动", Category::HousingRepair),
    ("占道停车", Category::PublicSafety),
    ("独居老人买菜难", Category::Livelihood),
    ("水沟臭味", Category::Drainage),
    ("消防通道堵塞", Category::PublicSafety),
];

fn cst(y: i32, m: u32, d: u32, h: u32) -> i64 {
    FixedOffset::east_opt(8 * 3600)
        .and_then(|o| o.with_ymd_and_hms(y, m, d, h, 0, 0).single())
        .map_or(0, |t| t.timestamp_micros())
}

/// How far one demo issue gets: (state reached, days to claim, days to fix, rating).
fn plan(n: usize) -> (IssueState, i64, i64, i32) {
    match n % 20 {
        0..=10 => (
            IssueState::Verified,
            (n % 3) as i64,
            2 + (n % 9) as i64,
            [5, 5, 4, 5, 3, 4, 5][n % 7],
        ),
        11 | 12 => (IssueState::Resolved, 1, 4, 0),
        13 | 14 => (IssueState::InProgress, 1, 0, 0),
        15 => (IssueState::Claimed, 2, 0, 0),
        16 => (IssueState::Acknowledged, 0, 0, 0),
        17 => (IssueState::Reported, 0, 0, 0),
        18 => (IssueState::Rejected, 0, 0, 0),
        _ => (IssueState::Verified, 1, 20, 2),
    }
}

/// Seeds as `actor`, whose token the people service accepts (the service's own).
pub async fn run(store: &Store, people: &People, actor: &Actor) -> anyhow::Result<()> {
    let actor = actor.clone();
    let community = people
        .community_named(&actor, "双泉社区")
        .await
        .map_err(|_| {
            anyhow::anyhow!("双泉社区 is not in the people service; run `linli-people seed` first")
        })?;
    let households = people.household_list(&actor, &community.id, 0).await?;
    let cadres = people.cadres(&actor, &community.id).await?;
    if households.len() < 40 || cadres.len() < 2 {
        anyhow::bail!(
            "the people service lacks the demo households or cadres; run `linli-people seed` first"
        );
    }
    let unit = cadres[0].unit_id.clone();
    let cadre = |n: usize| Claimant {
        cadre_id: Some(cadres[n % cadres.len()].id.clone()),
        unit_id: unit.clone(),
        participants: vec![],
    };
    let now = now_micros();

    let mut walked = 0;
    // The story's road and sewer, then forty issues over the last 120 days.
    for n in 0..42usize {
        let (title, category, three_most, source, household, reported_at) = match n {
            0 => (
                "八角亭副食批发街路面破损、积水",
                Category::Road,
                None,
                Source::FoundOnVisit,
                String::new(),
                cst(2020, 11, 25, 10),
            ),
            1 => (
                "小区下粪池堵塞，臭气冲天",
                Category::Drainage,
                Some(ThreeMost::MostVexing),
                Source::ResidentReport,
                households[0].id.clone(),
                cst(2020, 6, 1, 8),
            ),
            _ => {
                let (title, category) = TITLES[n % TITLES.len()];
                let three_most = [
                    None,
                    None,
                    Some(ThreeMost::MostWorrying),
                    None,
                    Some(ThreeMost::MostDistressing),
                    Some(ThreeMost::MostVexing),
                ][n % 6];
                // Open issues are recent; the finished ones spread over four months.
                let days_ago = if plan(n).0.is_open() {
                    (n as i64 % 9) + 1
                } else {
                    (n as i64 * 37) % 115 + 12
                };
                let reported_at = now - days_ago * DAY - (n as i64 % 8) * HOUR;
                (
                    title,
                    category,
                    three_most,
                    Source::ResidentReport,
                    households[(n * 7) % households.len()].id.clone(),
                    reported_at,
                )
            }
        };
        let new = NewIssue {
            community_id: community.id.clone(),
            compound_id: String::new(),
            building_id: String::new(),
            household_id: household,
            title: title.into(),
            description: String::new(),
            category,
            three_most,
            location_text: String::new(),
            latitude: 0.0,
            longitude: 0.0,
            source,
            attachments: vec![],
            reported_at,
            reporter_contact: None,
        };
        let key = IdemKey {
            key: format!("seed:issue:{n}"),
            fingerprint: format!("seed:issue:{n}"),
        };
        let issue = store.report(&actor, &key, new).await?;
        // An issue walked by an earlier run has moved on; leave it as it is.
        if issue.version != 1 {
            continue;
        }
        let (target, claim_days, fix_days, rating) = match n {
            0 => (IssueState::Verified, 1, 27, 5),
            1 => (IssueState::Verified, 1, 9, 5),
            _ => plan(n),
        };
        let mut version = issue.version;
        let mut at = reported_at;
        let mut step = |action: Action, when: i64| {
            at = when.min(now);
            let mv = Move {
                issue_id: issue.id.clone(),
                expected_version: version,
                note: String::new(),
                at: Some(at),
            };
            version += 1;
            (mv, action)
        };
        let mut moves = Vec::new();
        if target == IssueState::Rejected {
            moves.push(step(
                Action::Reject {
                    reason: "不属于社区管辖，已转交市政".into(),
                },
                reported_at + 5 * HOUR,
            ));
        } else if target != IssueState::Reported {
            moves.push(step(Action::Acknowledge, reported_at + 3 * HOUR));
            if target != IssueState::Acknowledged {
                let claimant = if n == 0 {
                    Claimant {
                        cadre_id: None,
                        unit_id: unit.clone(),
                        participants: cadres.iter().take(2).map(|c| c.id.clone()).collect(),
                    }
                } else {
                    cadre(n)
                };
                moves.push(step(
                    Action::Claim(claimant),
                    reported_at + claim_days * DAY + 4 * HOUR,
                ));
                if target != IssueState::Claimed {
                    moves.push(step(
                        Action::Start,
                        reported_at + claim_days * DAY + 6 * HOUR,
                    ));
                    if n == 1 {
                        // The sewer: fixed, reopened by the household, fixed for good.
                        moves.push(step(Action::Resolve(vec![]), reported_at + 4 * DAY));
                        moves.push(step(
                            Action::Reopen {
                                resolution_due_at: reported_at + 13 * DAY,
                            },
                            reported_at + 6 * DAY,
                        ));
                        moves.push(step(Action::Start, reported_at + 6 * DAY + HOUR));
                    }
                    if matches!(target, IssueState::Resolved | IssueState::Verified) {
                        moves.push(step(Action::Resolve(vec![]), reported_at + fix_days * DAY));
                        if target == IssueState::Verified {
                            moves.push(step(
                                Action::Confirm {
                                    rating,
                                    comment: String::new(),
                                },
                                reported_at + (fix_days + 1) * DAY,
                            ));
                        }
                    }
                }
            }
        }
        if moves.is_empty() {
            continue;
        }
        walked += 1;
        for (mv, action) in moves {
            store.transition(&actor, mv, |_, _| Ok(action)).await?;
        }
    }
    let summary = store.summary(&community.id).await?;
    println!(
        "demo issues: {} ({walked} moved along) — {} open, {} overdue, {} resolved",
        community.name, summary.open_issues, summary.overdue_issues, summary.resolved_issues
    );
    Ok(())
}

mod county;
pub use county::county;
