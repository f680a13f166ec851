//! The story linli is modelled on (seed article, 2021-01-22), replayed
//! through the API on both backends: the road of 八角亭副食批发街, found broken
//! on a visit on 2020-11-25, claimed by the county discipline commission and
//! repaired within a month, confirmed by the residents; and a blocked sewer,
//! reopened once by the household that reported it before it was fixed.
mod common;

use chrono::{FixedOffset, TimeZone};
use common::*;
use linli_core::testing::Backend;
use linli_proto::issues::v1 as pb;
use prost_types::Timestamp;

/// A time in China Standard Time.
fn cst(y: i32, m: u32, d: u32, h: u32) -> Timestamp {
    let t = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .unwrap();
    Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

async fn the_road_and_the_sewer(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let (liu, ruan) = (w.cadres[0].clone(), w.cadres[1].clone());
    let c = &mut h.client;

    // 2020-11-25: 刘海元 finds the road broken while visiting.
    let road = c
        .report_issue(as_role(
            pb::ReportIssueRequest {
                idempotency_key: key(),
                community_id: w.community.clone(),
                title: "八角亭副食批发街路面破损、积水".into(),
                description: "雨天一脚水、晴天一身灰，行人绕道".into(),
                category: pb::Category::Road as i32,
                location: Some(pb::Location {
                    text: "八角亭副食批发街".into(),
                    ..Default::default()
                }),
                source: pb::Source::FoundOnVisit as i32,
                attachments: vec![pb::Attachment {
                    url: "https://img.linli.example/road-before.jpg".into(),
                    mime_type: "image/jpeg".into(),
                    phase: pb::PhotoPhase::Before as i32,
                    ..Default::default()
                }],
                reported_at: Some(cst(2020, 11, 25, 10)),
                ..Default::default()
            },
            "cadre",
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    // Claimed at once (主动认领) by the commission as a unit (集体出动), with 刘海元 and
    // 小阮: the claim acknowledges the report too.
    let i = c
        .claim_issue(pb::ClaimIssueRequest {
            transition: mv_at(&road, cst(2020, 11, 25, 15)),
            unit_id: w.unit.clone(),
            participant_cadre_ids: vec![liu.clone(), ruan.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let i = c
        .start_work(pb::StartWorkRequest {
            transition: mv_at(&i, cst(2020, 11, 27, 9)),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let after = pb::Attachment {
        url: "https://img.linli.example/road-after.jpg".into(),
        mime_type: "image/jpeg".into(),
        phase: pb::PhotoPhase::After as i32,
        ..Default::default()
    };
    let i = c
        .resolve_issue(pb::ResolveIssueRequest {
            transition: mv_at(&i, cst(2020, 12, 22, 17)),
            attachments: vec![after],
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    // Nobody reported it from home, so a resident household of the community confirms it.
    let i = c
        .confirm_resolution(pb::ConfirmResolutionRequest {
            transition: mv_at(&i, cst(2021, 1, 10, 10)),
            household_id: w.households[1].clone(),
            rating: 5,
            comment: "路修好了，再也不用绕远路了".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(i.state, pb::IssueState::Verified as i32);
    let resolved = i.resolved_at.unwrap().seconds;
    assert!(
        resolved <= i.resolution_due_at.unwrap().seconds,
        "repaired before the 30-day deadline"
    );
    assert!(
        resolved - road.reported_at.unwrap().seconds < 31 * DAY,
        "within a month"
    );
    let claim = i.claim.unwrap();
    assert_eq!(
        (claim.unit_id.as_str(), claim.participant_cadre_ids),
        (w.unit.as_str(), vec![liu.clone(), ruan.clone()])
    );
    assert_eq!(
        i.attachments.iter().map(|a| a.phase).collect::<Vec<_>>(),
        vec![pb::PhotoPhase::Before as i32, pb::PhotoPhase::After as i32]
    );

    // 2020-06: a blocked sewer (最烦心), reported by a household.
    let sewer = c
        .report_issue(pb::ReportIssueRequest {
            title: "小区下粪池堵塞，臭气冲天".into(),
            three_most: pb::ThreeMost::MostVexing as i32,
            reported_at: Some(cst(2020, 6, 1, 8)),
            ..report(w, "")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(
        sewer.resolution_due_at.unwrap().seconds - sewer.reported_at.unwrap().seconds,
        7 * DAY,
        "三最 drainage: half of 14 days"
    );
    let mut walk = Walk { c: &mut *c };
    let i = walk.ack(sewer.clone(), cst(2020, 6, 1, 9)).await;
    let i = walk.claim(i, &ruan, cst(2020, 6, 2, 9)).await;
    let i = walk.start(i, cst(2020, 6, 2, 10)).await;
    let i = walk.resolve(i, cst(2020, 6, 5, 16)).await;
    let c = walk.c;
    let i = c
        .reopen_issue(pb::ReopenIssueRequest {
            transition: Some(pb::Transition {
                note: "还是臭，管道没通".into(),
                ..mv_at(&i, cst(2020, 6, 7, 8)).unwrap()
            }),
            household_id: w.households[0].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let mut walk = Walk { c };
    let i = walk.start(i, cst(2020, 6, 7, 9)).await;
    let i = walk.resolve(i, cst(2020, 6, 10, 17)).await;
    let i = walk
        .confirm(i, &w.households[0], 5, cst(2020, 6, 12, 10))
        .await;
    let c = walk.c;
    assert_eq!(
        (i.state, i.reopen_count),
        (pb::IssueState::Verified as i32, 1)
    );
    let kinds: Vec<i32> = c
        .get_timeline(pb::GetTimelineRequest {
            issue_id: sewer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    use pb::EventKind as E;
    assert_eq!(
        kinds,
        [
            E::Reported,
            E::Acknowledged,
            E::Claimed,
            E::Started,
            E::Resolved,
            E::Reopened,
            E::Started,
            E::Resolved,
            E::Confirmed
        ]
        .map(|k| k as i32)
        .to_vec()
    );

    // 2020 in figures: two issues, both answered in time, fixed and rated well.
    let year = c
        .get_statistics(pb::GetStatisticsRequest {
            community_id: w.community.clone(),
            from: Some(cst(2020, 1, 1, 0)),
            to: Some(cst(2021, 1, 1, 0)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rate = |r: Option<pb::Rate>| r.map(|r| (r.numerator, r.denominator)).unwrap();
    assert_eq!(year.total, 2);
    assert_eq!(
        (
            rate(year.response_rate),
            rate(year.resolution_rate),
            rate(year.satisfaction_rate)
        ),
        ((2, 2), (2, 2), (2, 2))
    );
    // Nothing of this is overdue or escalated today.
    assert_eq!(
        c.run_supervision(pb::RunSupervisionRequest::default())
            .await
            .unwrap()
            .into_inner()
            .escalated,
        0
    );
    let ranking = c
        .get_ranking(pb::GetRankingRequest {
            scope: pb::RankingScope::Unit as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    // The road was fixed in time; the sewer's final fix (06-10) came two days after
    // its first deadline (06-08), whatever the reopen's new deadline says.
    assert_eq!(
        (
            ranking[0].id.as_str(),
            ranking[0].issues,
            ranking[0].resolved_on_time
        ),
        (w.unit.as_str(), 2, 1)
    );
    h.stop().await;
}

linli_core::backend_tests!(the_road_and_the_sewer);
