//! Every RPC of the issues service over real sockets, with a real people
//! service behind it, on SQLite and on PostgreSQL.
mod common;

use common::*;
use linli_core::testing::Backend;
use linli_proto::issues::v1 as pb;
use pb::IssueState as S;
use tonic::Code;

async fn reporting_and_the_happy_path(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;

    let cases: Vec<(pb::ReportIssueRequest, Code, &str)> = vec![
        (
            pb::ReportIssueRequest {
                title: " ".into(),
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "title",
        ),
        (
            pb::ReportIssueRequest {
                category: 0,
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "category",
        ),
        (
            pb::ReportIssueRequest {
                category: 77,
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "category",
        ),
        (
            pb::ReportIssueRequest {
                three_most: 9,
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "three_most",
        ),
        (
            pb::ReportIssueRequest {
                source: 0,
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "source",
        ),
        (
            pb::ReportIssueRequest {
                household_id: String::new(),
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "household_id",
        ),
        (
            pb::ReportIssueRequest {
                household_id: linli_core::new_id(),
                ..report(w, "x")
            },
            Code::NotFound,
            "household",
        ),
        (
            pb::ReportIssueRequest {
                household_id: w.other_household.clone(),
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "household_id",
        ),
        (
            pb::ReportIssueRequest {
                community_id: linli_core::new_id(),
                ..report(w, "x")
            },
            Code::NotFound,
            "community",
        ),
        (
            pb::ReportIssueRequest {
                community_id: w.households[0].clone(),
                ..report(w, "x")
            },
            Code::NotFound,
            "community",
        ),
        (
            pb::ReportIssueRequest {
                location: Some(pb::Location {
                    text: String::new(),
                    latitude: 100.0,
                    longitude: 0.0,
                }),
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "location.latitude",
        ),
        (
            pb::ReportIssueRequest {
                attachments: vec![pb::Attachment {
                    mime_type: "image/jpeg".into(),
                    phase: 1,
                    ..Default::default()
                }],
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "attachments[0].url",
        ),
        (
            pb::ReportIssueRequest {
                attachments: vec![pb::Attachment {
                    url: "https://x/a.jpg".into(),
                    mime_type: "image/jpeg".into(),
                    phase: 0,
                    ..Default::default()
                }],
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "attachments[0].phase",
        ),
        (
            pb::ReportIssueRequest {
                reported_at: Some(ago(-DAY)),
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "reported_at",
        ),
        (
            pb::ReportIssueRequest {
                idempotency_key: String::new(),
                ..report(w, "x")
            },
            Code::InvalidArgument,
            "idempotency_key",
        ),
    ];
    for (req, code, field) in cases {
        assert_status(c.report_issue(req).await, code, field);
    }
    let none = c
        .list_issues(pb::ListIssuesRequest {
            community_id: w.community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.issues.is_empty(), "no bad report left an issue behind");

    let req = pb::ReportIssueRequest {
        three_most: pb::ThreeMost::MostVexing as i32,
        location: Some(pb::Location {
            text: "1栋后面".into(),
            latitude: 29.6,
            longitude: 114.5,
        }),
        attachments: vec![pb::Attachment {
            url: "https://img.linli.example/before.jpg".into(),
            mime_type: "image/jpeg".into(),
            phase: pb::PhotoPhase::Before as i32,
            ..Default::default()
        }],
        ..report(w, "下粪池堵塞")
    };
    let issue = c
        .report_issue(req.clone())
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(
        c.report_issue(req.clone())
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap(),
        issue,
        "idempotent"
    );
    assert_status(
        c.report_issue(pb::ReportIssueRequest {
            title: "别的".into(),
            ..req.clone()
        })
        .await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    assert_eq!(issue.state, S::Reported as i32);
    assert_eq!(issue.watcher_household_ids, vec![w.households[0].clone()]);
    // A 三最 drainage issue: 12 hours to answer, 7 days to fix.
    let reported = issue.reported_at.unwrap().seconds;
    assert_eq!(issue.response_due_at.unwrap().seconds - reported, 12 * HOUR);
    assert_eq!(issue.resolution_due_at.unwrap().seconds - reported, 7 * DAY);

    let cadre = h.world.cadres[1].clone();
    let i = c
        .acknowledge_issue(as_role(
            pb::AcknowledgeIssueRequest {
                transition: mv(&issue),
            },
            "community_worker",
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!((i.state, i.version), (S::Acknowledged as i32, 2));
    assert!(i.responded_at.is_some());
    let i = c
        .claim_issue(pb::ClaimIssueRequest {
            transition: mv(&i),
            cadre_id: cadre.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let claim = i.claim.clone().unwrap();
    assert_eq!(
        (claim.cadre_id.as_str(), claim.unit_id.as_str()),
        (cadre.as_str(), h.world.unit.as_str())
    );
    let i = c
        .start_work(pb::StartWorkRequest { transition: mv(&i) })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(i.state, S::InProgress as i32);
    let after = pb::Attachment {
        sha256: "ab".repeat(32),
        mime_type: "image/png".into(),
        phase: pb::PhotoPhase::After as i32,
        ..Default::default()
    };
    let i = c
        .resolve_issue(pb::ResolveIssueRequest {
            transition: mv(&i),
            attachments: vec![after.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(i.state, S::Resolved as i32);
    assert_eq!(i.attachments.len(), 2);
    assert_eq!(i.attachments[1], after);
    let confirm = |i: &pb::Issue, household: &str, rating: i32| pb::ConfirmResolutionRequest {
        transition: mv(i),
        household_id: household.into(),
        rating,
        comment: "干净多了".into(),
    };
    assert_status(
        c.confirm_resolution(confirm(&i, &h.world.households[0], 6))
            .await,
        Code::InvalidArgument,
        "rating",
    );
    assert_status(
        c.confirm_resolution(confirm(&i, &h.world.households[1], 5))
            .await,
        Code::PermissionDenied,
        "",
    );
    let i = c
        .confirm_resolution(confirm(&i, &h.world.households[0], 5))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!((i.state, i.rating, i.version), (S::Verified as i32, 5, 6));
    assert!(i.closed_at.is_some());

    let timeline = c
        .get_timeline(pb::GetTimelineRequest {
            issue_id: issue.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let kinds: Vec<i32> = timeline.iter().map(|e| e.kind).collect();
    use pb::EventKind as E;
    assert_eq!(
        kinds,
        [
            E::Reported,
            E::Acknowledged,
            E::Claimed,
            E::Started,
            E::Resolved,
            E::Confirmed
        ]
        .map(|k| k as i32)
        .to_vec()
    );
    assert_eq!(timeline[1].actor, "test-community_worker");
    assert_eq!(
        (timeline[2].from_state, timeline[2].to_state),
        (S::Acknowledged as i32, S::Claimed as i32)
    );
    assert_eq!(timeline[4].attachments, vec![after]);
    assert!(timeline.windows(2).all(|p| p[0].seq < p[1].seq));
    assert_eq!(
        c.get_issue(pb::GetIssueRequest {
            issue_id: issue.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap(),
        i
    );
    assert_status(
        c.get_issue(pb::GetIssueRequest {
            issue_id: linli_core::new_id(),
        })
        .await,
        Code::NotFound,
        "issue",
    );

    // A finished issue refuses every move.
    let cadre_claim = pb::ClaimIssueRequest {
        transition: mv(&i),
        cadre_id: cadre.clone(),
        ..Default::default()
    };
    assert_status(
        c.acknowledge_issue(pb::AcknowledgeIssueRequest { transition: mv(&i) })
            .await,
        Code::FailedPrecondition,
        "verified",
    );
    assert_status(
        c.claim_issue(cadre_claim.clone()).await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.unclaim_issue(pb::UnclaimIssueRequest { transition: mv(&i) })
            .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.reassign_issue(pb::ReassignIssueRequest {
            transition: mv(&i),
            cadre_id: cadre.clone(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.start_work(pb::StartWorkRequest { transition: mv(&i) })
            .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.resolve_issue(pb::ResolveIssueRequest {
            transition: mv(&i),
            attachments: vec![],
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.confirm_resolution(confirm(&i, &h.world.households[0], 5))
            .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.reopen_issue(pb::ReopenIssueRequest {
            transition: mv(&i),
            household_id: h.world.households[0].clone(),
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    let with_note = Some(pb::Transition {
        note: "不归我们管".into(),
        ..mv(&i).unwrap()
    });
    assert_status(
        c.reject_issue(pb::RejectIssueRequest {
            transition: with_note,
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.mark_duplicate(pb::MarkDuplicateRequest {
            transition: mv(&i),
            original_issue_id: linli_core::new_id(),
        })
        .await,
        Code::NotFound,
        "issue",
    );
    // A stale version is ABORTED before the state is even looked at.
    let stale = Some(pb::Transition {
        expected_version: 1,
        ..mv(&i).unwrap()
    });
    assert_status(
        c.acknowledge_issue(pb::AcknowledgeIssueRequest { transition: stale })
            .await,
        Code::Aborted,
        "",
    );
    assert_status(
        c.acknowledge_issue(pb::AcknowledgeIssueRequest { transition: None })
            .await,
        Code::InvalidArgument,
        "transition",
    );
    h.stop().await;
}

async fn moves_check_state_version_and_time(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let issue = c
        .report_issue(pb::ReportIssueRequest {
            reported_at: Some(ago(2 * DAY)),
            ..report(&h.world, "路灯不亮")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    // A reported issue cannot be resolved before anyone took it on. (A claim may come
    // straight from the report: see a_claim_straight_from_the_report_acknowledges_it.)
    assert_status(
        c.resolve_issue(pb::ResolveIssueRequest {
            transition: mv(&issue),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "reported",
    );
    assert_status(
        c.start_work(pb::StartWorkRequest {
            transition: mv(&issue),
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: mv_at(&issue, ago(3 * DAY)),
        })
        .await,
        Code::InvalidArgument,
        "transition.at",
    );
    assert_status(
        c.acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: mv_at(&issue, ago(-HOUR)),
        })
        .await,
        Code::InvalidArgument,
        "transition.at",
    );
    let no_version = Some(pb::Transition {
        expected_version: 0,
        ..mv(&issue).unwrap()
    });
    assert_status(
        c.acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: no_version,
        })
        .await,
        Code::InvalidArgument,
        "transition.expected_version",
    );
    assert_status(
        c.reject_issue(pb::RejectIssueRequest {
            transition: mv(&issue),
        })
        .await,
        Code::InvalidArgument,
        "transition.note",
    );
    let unchanged = c
        .get_issue(pb::GetIssueRequest {
            issue_id: issue.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(unchanged, issue, "refused moves change nothing");

    let with_reason = Some(pb::Transition {
        note: "属于市政管辖，已转交".into(),
        ..mv(&issue).unwrap()
    });
    let rejected = c
        .reject_issue(pb::RejectIssueRequest {
            transition: with_reason,
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(
        (rejected.state, rejected.reject_reason.as_str()),
        (S::Rejected as i32, "属于市政管辖，已转交")
    );
    h.stop().await;
}

async fn claims_need_registered_cadres(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let issue = c
        .report_issue(report(w, "道路破损"))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let i = c
        .acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: mv(&issue),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let claim = |cadre: &str, unit: &str, participants: &[&String]| pb::ClaimIssueRequest {
        transition: mv(&i),
        cadre_id: cadre.into(),
        unit_id: unit.into(),
        participant_cadre_ids: participants.iter().map(|p| p.to_string()).collect(),
    };
    let refused = c
        .claim_issue(claim(&w.stranger, "", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // Named by name as well as id, the community too.
    assert!(
        refused.message().contains("not actively registered")
            && refused.message().contains(&format!(" ({})", w.stranger))
            && refused.message().contains(&format!(" ({})", w.community)),
        "{refused:?}"
    );
    assert_status(
        c.claim_issue(claim("", &w.unit, &[])).await,
        Code::InvalidArgument,
        "participant_cadre_ids",
    );
    assert_status(
        c.claim_issue(claim("", &w.unit, &[&w.cadres[0], &w.stranger]))
            .await,
        Code::FailedPrecondition,
        "not actively registered",
    );
    assert_status(
        c.claim_issue(claim("", &w.unit, &[&w.cadres[0], &w.cadres[0]]))
            .await,
        Code::InvalidArgument,
        "participant_cadre_ids[1]",
    );
    assert_status(
        c.claim_issue(claim(&w.cadres[0], &w.unit, &[])).await,
        Code::InvalidArgument,
        "unit_id",
    );
    assert_status(
        c.claim_issue(claim("", "", &[])).await,
        Code::InvalidArgument,
        "cadre_id",
    );
    assert_status(
        c.claim_issue(claim("", &linli_core::new_id(), &[&w.cadres[0]]))
            .await,
        Code::NotFound,
        "unit",
    );
    assert_status(
        c.claim_issue(claim(&linli_core::new_id(), "", &[])).await,
        Code::NotFound,
        "cadre",
    );

    // 集体出动: the whole unit, with three of its cadres.
    let i = c
        .claim_issue(claim(
            "",
            &w.unit,
            &[&w.cadres[0], &w.cadres[1], &w.cadres[2]],
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let cl = i.claim.clone().unwrap();
    assert_eq!(
        (
            cl.cadre_id.as_str(),
            cl.unit_id.as_str(),
            cl.participant_cadre_ids.len()
        ),
        ("", w.unit.as_str(), 3)
    );
    let mine = c
        .list_issues(pb::ListIssuesRequest {
            claimant_id: w.cadres[1].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        mine.issues.len(),
        1,
        "a participant finds the issue among their claims"
    );

    let i = c
        .reassign_issue(pb::ReassignIssueRequest {
            transition: mv(&i),
            cadre_id: w.cadres[3].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(
        (i.state, i.claim.as_ref().unwrap().cadre_id.as_str()),
        (S::Claimed as i32, w.cadres[3].as_str())
    );
    let i = c
        .unclaim_issue(pb::UnclaimIssueRequest { transition: mv(&i) })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(i.state, S::Acknowledged as i32);
    assert!(i.claim.is_none());
    let kinds: Vec<i32> = c
        .get_timeline(pb::GetTimelineRequest {
            issue_id: i.id.clone(),
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
        &kinds[2..],
        &[E::Claimed as i32, E::Reassigned as i32, E::Unclaimed as i32]
    );
    h.stop().await;
}

async fn concurrent_claims_have_one_winner(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let issue = h
        .client
        .report_issue(report(&h.world, "积水"))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let i = h
        .client
        .acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: mv(&issue),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let mut tasks = Vec::new();
    for cadre in h.world.cadres.clone() {
        let mut client = h.client.clone();
        let req = pb::ClaimIssueRequest {
            transition: mv(&i),
            cadre_id: cadre,
            ..Default::default()
        };
        tasks.push(tokio::spawn(async move { client.claim_issue(req).await }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => winners.push(r.into_inner().issue.unwrap()),
            Err(s) => assert_eq!(s.code(), Code::Aborted, "{s:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let now = h
        .client
        .get_issue(pb::GetIssueRequest {
            issue_id: i.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(now.claim, winners[0].claim);
    let claims = h
        .client
        .get_timeline(pb::GetTimelineRequest {
            issue_id: i.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .filter(|e| e.kind == pb::EventKind::Claimed as i32)
        .count();
    assert_eq!(claims, 1);
    h.stop().await;
}

async fn a_down_people_service_writes_nothing(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let first = report(&h.world, "井盖松动");
    let issue = h
        .client
        .report_issue(first.clone())
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let i = h
        .client
        .acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: mv(&issue),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    h.people_server.take().unwrap().stop().await;

    let claim = pb::ClaimIssueRequest {
        transition: mv(&i),
        cadre_id: h.world.cadres[0].clone(),
        ..Default::default()
    };
    assert_status(
        h.client.claim_issue(claim).await,
        Code::Unavailable,
        "people service",
    );
    // A household people has not confirmed cannot be checked: UNAVAILABLE.
    assert_status(
        h.client
            .report_issue(pb::ReportIssueRequest {
                household_id: h.world.households[1].clone(),
                ..report(&h.world, "又一个")
            })
            .await,
        Code::Unavailable,
        "people service",
    );
    // A retry of a report already made is answered from the database alone.
    let retried = h
        .client
        .report_issue(first)
        .await
        .expect("a retry is answered without people")
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(retried.id, issue.id);
    let still = h
        .client
        .get_issue(pb::GetIssueRequest {
            issue_id: i.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(still, i, "nothing was written");
    let all = h
        .client
        .list_issues(pb::ListIssuesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.issues.len(), 1);
    // Moves that need nothing from people still work.
    h.client
        .unclaim_issue(pb::UnclaimIssueRequest { transition: mv(&i) })
        .await
        .expect_err("acknowledged cannot be unclaimed");
    // A community and household people confirmed within the last minute are
    // not asked about again: a new report from that household is taken.
    let taken = h
        .client
        .report_issue(report(&h.world, "楼道灯不亮"))
        .await
        .expect("a report from a household confirmed a moment ago")
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(taken.household_id, h.world.households[0]);
    h.server.stop().await;
}

/// A community's summary as (open, overdue, resolved).
async fn summary_counts(c: &mut Client, community: &str) -> (i32, i32, i32) {
    let s = c
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: community.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    (s.open_issues, s.overdue_issues, s.resolved_issues)
}

async fn reopen_reject_and_duplicates(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let original = c
        .report_issue(report(w, "化粪池堵塞"))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let dup = c
        .report_issue(pb::ReportIssueRequest {
            household_id: w.households[1].clone(),
            ..report(w, "化粪池又堵了")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_status(
        c.mark_duplicate(pb::MarkDuplicateRequest {
            transition: mv(&dup),
            original_issue_id: dup.id.clone(),
        })
        .await,
        Code::InvalidArgument,
        "original_issue_id",
    );
    let d = c
        .mark_duplicate(pb::MarkDuplicateRequest {
            transition: mv(&dup),
            original_issue_id: original.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(
        (d.state, d.duplicate_of.as_str()),
        (S::Duplicate as i32, original.id.as_str())
    );
    let o = c
        .get_issue(pb::GetIssueRequest {
            issue_id: original.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let mut expected = vec![w.households[0].clone(), w.households[1].clone()];
    expected.sort();
    assert_eq!(
        o.watcher_household_ids, expected,
        "the duplicate's reporter now follows the original"
    );
    let third = c
        .report_issue(pb::ReportIssueRequest {
            household_id: w.households[2].clone(),
            ..report(w, "第三次")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_status(
        c.mark_duplicate(pb::MarkDuplicateRequest {
            transition: mv(&third),
            original_issue_id: d.id.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "duplicate",
    );

    // Fixed, not good enough, fixed again.
    let mut walk = Walk { c };
    let i = walk.ack(o, ago(0)).await;
    let i = walk.claim(i, &w.cadres[1], ago(0)).await;
    let i = walk.start(i, ago(0)).await;
    let i = walk.resolve(i, ago(0)).await;
    let c = walk.c;
    // The third is open, the duplicate is neither open nor resolved.
    assert_eq!(summary_counts(c, &w.community).await, (1, 0, 1));
    assert_status(
        c.reopen_issue(pb::ReopenIssueRequest {
            transition: mv(&i),
            household_id: w.households[2].clone(),
        })
        .await,
        Code::PermissionDenied,
        "",
    );
    let i = c
        .reopen_issue(pb::ReopenIssueRequest {
            transition: mv(&i),
            household_id: w.households[0].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!((i.state, i.reopen_count), (S::Reopened as i32, 1));
    assert_eq!(
        summary_counts(c, &w.community).await,
        (2, 0, 0),
        "a reopened issue is counted open again, and no longer resolved"
    );
    assert!(i.resolved_at.is_none());
    let due = |t: Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos)).unwrap();
    assert!(
        due(i.resolution_due_at) > due(original.resolution_due_at),
        "a new resolution deadline"
    );
    let reopened = c
        .get_timeline(pb::GetTimelineRequest {
            issue_id: i.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .pop()
        .unwrap();
    assert_eq!(reopened.kind, pb::EventKind::Reopened as i32);
    let micros = |t: prost_types::Timestamp| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000;
    assert_eq!(
        micros(i.resolution_due_at.unwrap()) - micros(reopened.at.unwrap()),
        14 * DAY * 1_000_000,
        "drainage gets 14 days from the reopening"
    );
    assert_eq!(
        i.claim.as_ref().unwrap().cadre_id,
        w.cadres[1],
        "the claim stays"
    );
    let mut walk = Walk { c };
    let i = walk.start(i, ago(0)).await;
    let i = walk.resolve(i, ago(0)).await;
    let i = walk.confirm(i, &w.households[0], 4, ago(0)).await;
    assert_eq!(i.state, S::Verified as i32);
    assert_eq!(
        summary_counts(walk.c, &w.community).await,
        (1, 0, 1),
        "resolved, then verified: counted once"
    );
    h.stop().await;
}

async fn supervision_escalates_each_breach_once_across_replicas(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    // Reported three days ago, never answered: the response deadline (24 h) is missed.
    let late = h
        .client
        .report_issue(pb::ReportIssueRequest {
            reported_at: Some(ago(3 * DAY)),
            ..report(w, "垃圾没人清")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let fresh = h
        .client
        .report_issue(report(w, "新问题"))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let (replica, replica_client) = h.replica().await;

    // Both replicas sweep at once, several times.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut client = if i % 2 == 0 {
            h.client.clone()
        } else {
            replica_client.clone()
        };
        tasks.push(tokio::spawn(async move {
            client
                .run_supervision(pb::RunSupervisionRequest::default())
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut escalated = 0;
    for t in tasks {
        escalated += t.await.unwrap().unwrap().escalated;
    }
    assert_eq!(escalated, 1, "one breach, one escalation");
    let events = h
        .client
        .get_timeline(pb::GetTimelineRequest {
            issue_id: late.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let escalations: Vec<_> = events
        .iter()
        .filter(|e| e.kind == pb::EventKind::Escalated as i32)
        .collect();
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0].actor, "supervision");
    assert!(escalations[0].note.contains("response deadline missed"));

    let overdue = h
        .client
        .list_overdue_issues(pb::ListOverdueIssuesRequest {
            community_id: w.community.clone(),
            as_of: None,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .issues;
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].issue.as_ref().unwrap().id, late.id);
    assert_eq!(overdue[0].deadline, pb::DeadlineKind::Response as i32);
    assert!(overdue[0].overdue_seconds >= 2 * DAY - 60);
    let (_, overdue_count, _) = summary_counts(&mut h.client, &w.community).await;
    assert_eq!(overdue_count, 1, "the summary counts the one listed");
    // A community that does not exist is NOT_FOUND, as in the other calls; one with no
    // overdue issues is an empty list.
    assert_status(
        h.client
            .list_overdue_issues(pb::ListOverdueIssuesRequest {
                community_id: linli_core::new_id(),
                as_of: None,
                limit: 0,
            })
            .await,
        Code::NotFound,
        "community",
    );
    let quiet = h
        .client
        .list_overdue_issues(pb::ListOverdueIssuesRequest {
            community_id: w.other_community.clone(),
            as_of: None,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .issues;
    assert!(quiet.is_empty());
    let listed = h
        .client
        .list_issues(pb::ListIssuesRequest {
            overdue_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .issues;
    assert_eq!(
        listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec![late.id.as_str()]
    );
    assert!(listed.iter().all(|i| i.id != fresh.id));
    assert_status(
        h.client
            .run_supervision(pb::RunSupervisionRequest {
                as_of: Some(ago(-DAY)),
            })
            .await,
        Code::InvalidArgument,
        "as_of",
    );

    // A limit keeps the most overdue: one reported two days ago is less late.
    let later = h
        .client
        .report_issue(pb::ReportIssueRequest {
            reported_at: Some(ago(2 * DAY)),
            ..report(w, "路灯不亮")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let overdue = |limit| pb::ListOverdueIssuesRequest {
        community_id: w.community.clone(),
        as_of: None,
        limit,
    };
    let ids = |r: pb::ListOverdueIssuesResponse| {
        r.issues
            .into_iter()
            .map(|o| o.issue.unwrap().id)
            .collect::<Vec<_>>()
    };
    let all = ids(h
        .client
        .list_overdue_issues(overdue(0))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(all, [late.id.clone(), later.id.clone()]);
    let first = ids(h
        .client
        .list_overdue_issues(overdue(1))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(first, std::slice::from_ref(&late.id));
    assert_status(
        h.client.list_overdue_issues(overdue(-1)).await,
        Code::InvalidArgument,
        "limit",
    );

    // 督办: supervisors only; idempotent by key.
    let note = pb::AddSupervisionNoteRequest {
        idempotency_key: key(),
        issue_id: late.id.clone(),
        note: "请三日内处理".into(),
    };
    assert_status(
        h.client
            .add_supervision_note(as_role(note.clone(), "cadre"))
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        h.client
            .add_supervision_note(as_role(note.clone(), "community_worker"))
            .await,
        Code::PermissionDenied,
        "",
    );
    let e1 = h
        .client
        .add_supervision_note(as_role(note.clone(), "supervisor"))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    let e2 = h
        .client
        .add_supervision_note(as_role(note.clone(), "supervisor"))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(e1.id, e2.id);
    assert_eq!(
        (e1.kind, e1.actor.as_str()),
        (pb::EventKind::SupervisionNote as i32, "test-supervisor")
    );
    assert_status(
        h.client
            .add_supervision_note(as_role(
                pb::AddSupervisionNoteRequest {
                    note: String::new(),
                    ..note
                },
                "supervisor",
            ))
            .await,
        Code::InvalidArgument,
        "note",
    );
    replica.stop().await;
    h.stop().await;
}

async fn unconfirmed_resolutions_close_by_themselves(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let issue = c
        .report_issue(pb::ReportIssueRequest {
            reported_at: Some(ago(20 * DAY)),
            ..report(w, "楼道杂物")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let mut walk = Walk { c };
    let i = walk.ack(issue, ago(20 * DAY - HOUR)).await;
    let i = walk.claim(i, &w.cadres[0], ago(20 * DAY - 2 * HOUR)).await;
    let i = walk.start(i, ago(19 * DAY)).await;
    let i = walk.resolve(i, ago(10 * DAY)).await;
    let c = walk.c;
    let sweep = c
        .run_supervision(pb::RunSupervisionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sweep.auto_closed, 1);
    let closed = c
        .get_issue(pb::GetIssueRequest {
            issue_id: i.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(closed.state, S::ClosedUnconfirmed as i32);
    assert_eq!(
        closed.closed_at.unwrap().seconds,
        i.resolved_at.unwrap().seconds + 7 * DAY,
        "closed when the period ran out"
    );
    assert_eq!(
        c.run_supervision(pb::RunSupervisionRequest::default())
            .await
            .unwrap()
            .into_inner()
            .auto_closed,
        0
    );
    let stats = c
        .get_statistics(pb::GetStatisticsRequest {
            community_id: w.community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.closed_unconfirmed, stats.verified), (1, 0));
    h.stop().await;
}

async fn watch_resumes_from_a_cursor(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let community = w.community.clone();
    let mut stream = h
        .client
        .watch_issues(pb::WatchIssuesRequest {
            community_id: community.clone(),
            after_seq: 0,
            from_now: false,
        })
        .await
        .unwrap()
        .into_inner();
    let issue = h
        .client
        .report_issue(report(w, "电梯坏了"))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    assert_eq!(
        (first.kind, first.issue_id.as_str()),
        (pb::EventKind::Reported as i32, issue.id.as_str())
    );
    drop(stream);

    // While the dashboard is away, two things happen.
    let i = h
        .client
        .acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: mv(&issue),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    h.client
        .claim_issue(pb::ClaimIssueRequest {
            transition: mv(&i),
            cadre_id: w.cadres[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Another community's events never show up here.
    h.client
        .report_issue(pb::ReportIssueRequest {
            community_id: w.other_community.clone(),
            household_id: w.other_household.clone(),
            ..report(w, "别处")
        })
        .await
        .unwrap();

    let mut stream = h
        .client
        .watch_issues(pb::WatchIssuesRequest {
            community_id: community.clone(),
            after_seq: first.seq,
            from_now: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                .event
                .unwrap(),
        );
    }
    assert_eq!(
        got.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![first.seq + 1, first.seq + 2]
    );
    assert_eq!(
        got.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![
            pb::EventKind::Acknowledged as i32,
            pb::EventKind::Claimed as i32
        ]
    );
    // And it keeps going live.
    let i = h
        .client
        .get_issue(pb::GetIssueRequest {
            issue_id: issue.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    h.client
        .start_work(pb::StartWorkRequest { transition: mv(&i) })
        .await
        .unwrap();
    let live = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    assert_eq!(
        (live.seq, live.kind),
        (first.seq + 3, pb::EventKind::Started as i32)
    );
    assert_status(
        h.client
            .watch_issues(pb::WatchIssuesRequest {
                community_id: community,
                after_seq: -1,
                from_now: false,
            })
            .await,
        Code::InvalidArgument,
        "after_seq",
    );
    h.stop().await;
}

async fn three_rates_on_a_hand_computed_fixture(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let hh = w.households[0].clone();
    let c = &mut h.client;
    let base = linli_core::time::now_micros();
    let plain = |title: &str, days_ago: i64, category: pb::Category| pb::ReportIssueRequest {
        reported_at: Some(before(base, days_ago * DAY)),
        category: category as i32,
        ..report(w, title)
    };
    // A: answered in 2 h, claimed at 3 h, fixed in 5 days, rated 5.
    let a = c
        .report_issue(plain("A", 10, pb::Category::Road))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    // B: answered late (30 h), claimed at 31 h, fixed in 6 days, rated 2.
    let b = c
        .report_issue(plain("B", 10, pb::Category::Road))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    // C: never answered (response overdue), still open.
    c.report_issue(plain("C", 10, pb::Category::Road))
        .await
        .unwrap();
    // D: rejected: left out of every rate.
    let d = c
        .report_issue(plain("D", 10, pb::Category::Road))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    // E: reported an hour ago: its response is not due yet.
    c.report_issue(pb::ReportIssueRequest {
        reported_at: Some(before(base, HOUR)),
        ..plain("E", 0, pb::Category::Road)
    })
    .await
    .unwrap();
    // F: sanitation (7 days), answered in 1 h, claimed at 2 h, fixed after 12 days (late), never confirmed.
    let f = c
        .report_issue(plain("F", 20, pb::Category::Sanitation))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();

    let mut walk = Walk { c };
    let at = |days_ago: i64, plus_hours: i64| before(base, days_ago * DAY - plus_hours * HOUR);
    let i = walk.ack(a, at(10, 2)).await;
    let i = walk.claim(i, &w.cadres[0], at(10, 3)).await;
    let i = walk.start(i, at(10, 4)).await;
    let i = walk.resolve(i, at(5, 0)).await;
    walk.confirm(i, &hh, 5, at(4, 0)).await;
    let i = walk.ack(b, at(10, 30)).await;
    let i = walk.claim(i, &w.cadres[1], at(10, 31)).await;
    let i = walk.start(i, at(10, 32)).await;
    let i = walk.resolve(i, at(4, 0)).await;
    walk.confirm(i, &hh, 2, at(3, 0)).await;
    let i = walk.ack(f, at(20, 1)).await;
    let i = walk.claim(i, &w.cadres[2], at(20, 2)).await;
    let i = walk.start(i, at(20, 3)).await;
    walk.resolve(i, at(8, 0)).await;
    let c = walk.c;
    let reason = Some(pb::Transition {
        note: "重复上报".into(),
        ..mv(&d).unwrap()
    });
    c.reject_issue(pb::RejectIssueRequest { transition: reason })
        .await
        .unwrap();
    assert_eq!(
        c.run_supervision(pb::RunSupervisionRequest::default())
            .await
            .unwrap()
            .into_inner()
            .auto_closed,
        1
    );

    let s = c
        .get_statistics(pb::GetStatisticsRequest {
            community_id: w.community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.total, 6);
    let rate = |r: Option<pb::Rate>| r.map(|r| (r.numerator, r.denominator)).unwrap();
    // Response: A and F on time, B late, C overdue; E not yet due, D rejected.
    assert_eq!(rate(s.response_rate), (2, 4));
    // Resolution: A, B, F resolved out of A, B, C, E, F.
    assert_eq!(rate(s.resolution_rate), (3, 5));
    assert!((s.resolution_rate.unwrap().value - 0.6).abs() < 1e-9);
    // Satisfaction: A (5) yes, B (2) no; F was never rated.
    assert_eq!(rate(s.satisfaction_rate), (1, 2));
    // Time to claim: 2 h, 3 h, 31 h → median 3 h, p90 31 h.
    let claim = s.time_to_claim.unwrap();
    assert_eq!(
        (claim.samples, claim.median_seconds, claim.p90_seconds),
        (3, 3 * HOUR, 31 * HOUR)
    );
    let resolve = s.time_to_resolve.unwrap();
    assert_eq!(
        (resolve.samples, resolve.median_seconds, resolve.p90_seconds),
        (3, 6 * DAY, 12 * DAY)
    );
    assert_eq!((s.verified, s.closed_unconfirmed), (2, 1));
    let count = |v: &[pb::Count], k: &str| v.iter().find(|c| c.key == k).map_or(0, |c| c.count);
    assert_eq!(
        (
            count(&s.by_state, "reported"),
            count(&s.by_state, "rejected"),
            count(&s.by_category, "road")
        ),
        (2, 1, 5)
    );
    // Open issues by 三最 mark: C and E are the two still waiting.
    assert_eq!(s.open_by_three_most.iter().map(|c| c.count).sum::<i32>(), 2);
    assert!(s.weeks.is_empty(), "weeks are counted only when asked");
    let open = c
        .list_issues(pb::ListIssuesRequest {
            community_id: w.community.clone(),
            open_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .issues;
    assert_eq!(open.len(), 2);
    assert!(
        open.iter()
            .all(|i| i.state == pb::IssueState::Reported as i32)
    );
    let weekly = c
        .get_statistics(pb::GetStatisticsRequest {
            community_id: w.community.clone(),
            weeks: 52,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(weekly.weeks.len(), 52);
    let (this_week, _) = linli_core::time::week_bounds(
        linli_core::time::now_micros(),
        linli_core::time::china_standard_time(),
    );
    let starts: Vec<i64> = weekly
        .weeks
        .iter()
        .map(|w| linli_core::time::micros(w.week_start.as_ref().unwrap()))
        .collect();
    assert_eq!(*starts.last().unwrap(), this_week, "this week comes last");
    assert!(
        starts
            .windows(2)
            .all(|p| p[1] - p[0] == 7 * DAY * 1_000_000)
    );
    // Every issue was reported within the year; A, B and F were resolved in it.
    let sum = |f: fn(&pb::WeekFigures) -> i32| weekly.weeks.iter().map(f).sum::<i32>();
    assert_eq!((sum(|w| w.reported), sum(|w| w.resolved)), (6, 3));
    assert_status(
        c.get_statistics(pb::GetStatisticsRequest {
            weeks: 53,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "weeks",
    );
    // A period filter: only issues reported in the last 15 days.
    let recent = c
        .get_statistics(pb::GetStatisticsRequest {
            community_id: w.community.clone(),
            from: Some(ago(15 * DAY)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recent.total, 5);
    let by_unit = c
        .get_statistics(pb::GetStatisticsRequest {
            unit_id: w.unit.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_unit.total, 3, "the unit's cadres claimed A, B and F");
    assert_status(
        c.get_statistics(pb::GetStatisticsRequest {
            from: Some(ago(0)),
            to: Some(ago(DAY)),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "to",
    );
    h.stop().await;
}

async fn ranking_is_fair_to_small_samples(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    // A second unit with one cadre, registered here.
    let lucky_unit = h
        .people
        .create_unit(linli_proto::people::v1::CreateUnitRequest {
            idempotency_key: key(),
            name: "县水利局".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap()
        .id;
    let lucky = h
        .people
        .create_cadre(linli_proto::people::v1::CreateCadreRequest {
            idempotency_key: key(),
            unit_id: lucky_unit.clone(),
            name: "幸运".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap()
        .id;
    let reg = h
        .people
        .request_registration(linli_proto::people::v1::RequestRegistrationRequest {
            idempotency_key: key(),
            cadre_id: lucky.clone(),
            community_id: w.community.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    h.people
        .approve_registration(linli_proto::people::v1::ApproveRegistrationRequest {
            registration_id: reg.id,
            expected_version: reg.version,
            active_from: None,
        })
        .await
        .unwrap();

    // The lucky unit: one issue, fixed on time. The commission: six, five fixed on time.
    let c = &mut h.client;
    let mut plan: Vec<(String, bool)> = vec![(lucky.clone(), true)];
    plan.extend((0..6).map(|i| (w.cadres[i % 5].clone(), i != 5)));
    for (n, (cadre, fix)) in plan.into_iter().enumerate() {
        let issue = c
            .report_issue(pb::ReportIssueRequest {
                reported_at: Some(ago(5 * DAY)),
                ..report(w, &format!("问题{n}"))
            })
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap();
        let mut walk = Walk { c: &mut *c };
        let i = walk.ack(issue, ago(5 * DAY - HOUR)).await;
        let i = walk.claim(i, &cadre, ago(5 * DAY - 2 * HOUR)).await;
        if fix {
            let i = walk.start(i, ago(4 * DAY)).await;
            walk.resolve(i, ago(3 * DAY)).await;
        }
    }
    let ranking = c
        .get_ranking(pb::GetRankingRequest {
            scope: pb::RankingScope::Unit as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(ranking.len(), 2);
    assert_eq!(ranking[0].id, w.unit, "5 of 6 beats 1 of 1");
    assert_eq!((ranking[0].issues, ranking[0].resolved_on_time), (6, 5));
    assert_eq!(
        (ranking[1].id.as_str(), ranking[1].raw_rate),
        (lucky_unit.as_str(), 1.0)
    );
    assert!(ranking[1].score < ranking[0].score);
    let communities = c
        .get_ranking(pb::GetRankingRequest {
            scope: pb::RankingScope::Community as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(communities.len(), 1);
    assert_eq!(communities[0].issues, 7);
    assert_status(
        c.get_ranking(pb::GetRankingRequest::default()).await,
        Code::InvalidArgument,
        "scope",
    );
    h.stop().await;
}

async fn lists_summary_and_audit(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let road = c
        .report_issue(pb::ReportIssueRequest {
            category: pb::Category::Road as i32,
            three_most: pb::ThreeMost::MostDistressing as i32,
            ..report(w, "八角亭副食批发街路面破损")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    for n in 0..4 {
        c.report_issue(report(w, &format!("下水道堵塞{n}")))
            .await
            .unwrap();
    }
    let by_text = c
        .list_issues(pb::ListIssuesRequest {
            title_contains: "路面".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_text
            .issues
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        vec![road.id.as_str()]
    );
    assert_eq!(
        by_text.issues[0].watcher_household_ids,
        vec![w.households[0].clone()],
        "lists carry each issue's watchers"
    );
    let percent = c
        .list_issues(pb::ListIssuesRequest {
            title_contains: "%".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        percent.issues.is_empty(),
        "wildcards in the search text are taken literally"
    );
    let by_mark = c
        .list_issues(pb::ListIssuesRequest {
            three_most: pb::ThreeMost::MostDistressing as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_mark.issues.len(), 1);
    let drains = c
        .list_issues(pb::ListIssuesRequest {
            community_id: w.community.clone(),
            category: pb::Category::Drainage as i32,
            state: S::Reported as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drains.issues.len(), 4);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_issues(pb::ListIssuesRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.issues.into_iter().map(|i| i.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], road.id, "in the order reported");
    assert_status(
        c.list_issues(pb::ListIssuesRequest {
            page_size: 1_000_000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        c.list_issues(pb::ListIssuesRequest {
            state: 42,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "state",
    );

    let i = c
        .acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: mv(&road),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let summary = c
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: w.community.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            summary.open_issues,
            summary.overdue_issues,
            summary.resolved_issues
        ),
        (5, 0, 0)
    );

    let events = c
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: w.community.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 6);
    assert_eq!(events.last().unwrap().action, "issue.acknowledged");
    assert!(
        events
            .last()
            .unwrap()
            .before_json
            .contains("\"state\":\"reported\"")
    );
    assert!(
        events
            .last()
            .unwrap()
            .after_json
            .contains("\"state\":\"acknowledged\"")
    );
    let about = c
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: w.community.clone(),
            entity_id: i.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(about.len(), 2);
    let ok = c
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: w.community.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    assert!(ok.intact && ok.checked == 6, "{ok:?}");
    sqlx::query("UPDATE audit_events SET after_json = '{}' WHERE community_id = $1 AND seq = 3")
        .bind(&w.community)
        .execute(&h.store.db.writer)
        .await
        .unwrap();
    let broken = c
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: w.community.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    assert_eq!((broken.intact, broken.first_broken_seq), (false, 3));
    h.stop().await;
}

/// 主动认领: a registered cadre claims a problem the moment it is reported; the
/// claim acknowledges it too, and the timeline says both, in order.
async fn a_claim_straight_from_the_report_acknowledges_it(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let issue = c
        .report_issue(report(w, "八角亭副食批发街路面破损"))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let claimed = c
        .claim_issue(pb::ClaimIssueRequest {
            transition: mv(&issue),
            cadre_id: w.cadres[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(claimed.state, pb::IssueState::Claimed as i32);
    assert_eq!(claimed.version, issue.version + 1, "one move, one version");
    let events = c
        .get_timeline(pb::GetTimelineRequest {
            issue_id: issue.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let steps: Vec<(i32, i32, i32)> = events
        .iter()
        .map(|e| (e.kind, e.from_state, e.to_state))
        .collect();
    use pb::EventKind as K;
    use pb::IssueState as S;
    assert_eq!(
        steps[1..],
        [
            (
                K::Acknowledged as i32,
                S::Reported as i32,
                S::Acknowledged as i32
            ),
            (K::Claimed as i32, S::Acknowledged as i32, S::Claimed as i32),
        ]
    );
    assert!(events[1].seq < events[2].seq);
    h.stop().await;
}

fn out<T>(r: Result<tonic::Response<T>, tonic::Status>) -> T {
    r.unwrap().into_inner()
}

/// The sewer: fixed before its deadline, reopened by the residents after it, fixed
/// again two days past it. The reopen gives the work a new deadline (for
/// escalation), but the on-time rate judges against the first: not on time.
async fn a_reopened_issue_is_judged_against_its_first_deadline(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let issue = c
        .report_issue(pb::ReportIssueRequest {
            reported_at: Some(ago(90 * DAY)),
            ..report(w, "八角亭下水道堵塞")
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let first_due = issue.resolution_due_at.unwrap().seconds * 1_000_000;
    let t = |days_after_due: i64| before(first_due, -days_after_due * DAY);
    let step = |i: &pb::Issue, days: i64| mv_at(i, t(days));
    let i = out(c
        .acknowledge_issue(pb::AcknowledgeIssueRequest {
            transition: step(&issue, -10),
        })
        .await)
    .issue
    .unwrap();
    let i = out(c
        .claim_issue(pb::ClaimIssueRequest {
            transition: step(&i, -10),
            cadre_id: w.cadres[0].clone(),
            ..Default::default()
        })
        .await)
    .issue
    .unwrap();
    let i = out(c
        .start_work(pb::StartWorkRequest {
            transition: step(&i, -9),
        })
        .await)
    .issue
    .unwrap();
    let i = out(c
        .resolve_issue(pb::ResolveIssueRequest {
            transition: step(&i, -2),
            ..Default::default()
        })
        .await)
    .issue
    .unwrap();
    let i = out(c
        .reopen_issue(pb::ReopenIssueRequest {
            transition: step(&i, 1),
            household_id: w.households[0].clone(),
        })
        .await)
    .issue
    .unwrap();
    let new_due = i.resolution_due_at.unwrap().seconds * 1_000_000;
    assert!(
        new_due > first_due + 2 * DAY * 1_000_000,
        "the reopen sets a later working deadline"
    );
    let i = out(c
        .start_work(pb::StartWorkRequest {
            transition: step(&i, 1),
        })
        .await)
    .issue
    .unwrap();
    out(c
        .resolve_issue(pb::ResolveIssueRequest {
            transition: step(&i, 2),
            ..Default::default()
        })
        .await);
    let ranking = out(c
        .get_ranking(pb::GetRankingRequest {
            scope: pb::RankingScope::Community as i32,
            ..Default::default()
        })
        .await)
    .entries;
    let own = ranking
        .iter()
        .find(|e| e.id == w.community)
        .expect("the community is ranked");
    assert_eq!((own.issues, own.resolved_on_time), (1, 0), "{own:?}");
    h.stop().await;
}

/// Reports that arrive at once are written together (one transaction for
/// those waiting at the same moment), and each is whole: a retry sent in the
/// same burst gets the same issue, a key reused for another report is
/// refused, each community's stream of events stays gapless, and each audit
/// chain is intact.
async fn reports_at_once_are_written_together_and_whole(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let mut requests = Vec::new();
    for i in 0..40 {
        let mut r = report(w, &format!("楼道灯坏了 {i}"));
        if i % 2 == 1 {
            r.community_id = w.other_community.clone();
            r.household_id = w.other_household.clone();
        }
        requests.push(r);
    }
    // Retries of five of them in the same burst, and a key reused for another report.
    for i in 0..5 {
        requests.push(requests[i].clone());
    }
    requests.push(pb::ReportIssueRequest {
        title: "另一件事".into(),
        ..requests[10].clone()
    });
    let mut burst = tokio::task::JoinSet::new();
    for (i, r) in requests.iter().cloned().enumerate() {
        let mut c = h.client.clone();
        burst.spawn(async move { (i, c.report_issue(r).await) });
    }
    let mut answers: Vec<Option<Result<pb::Issue, tonic::Status>>> = vec![None; requests.len()];
    while let Some(done) = burst.join_next().await {
        let (i, answer) = done.unwrap();
        answers[i] = Some(answer.map(|r| r.into_inner().issue.unwrap()));
    }
    let answers: Vec<_> = answers.into_iter().map(Option::unwrap).collect();
    let id = |i: usize| answers[i].as_ref().map(|issue| issue.id.clone());

    for i in 0..5 {
        assert_eq!(
            id(i).unwrap(),
            id(40 + i).unwrap(),
            "a retry gets the same issue"
        );
    }
    // Of the two requests under one key, the one written first holds it.
    match (&answers[10], &answers[45]) {
        (Ok(_), Err(refused)) | (Err(refused), Ok(_)) => {
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
            assert!(refused.message().contains("idempotency_key"), "{refused:?}");
        }
        other => panic!("one of the two must be refused: {other:?}"),
    }
    let ids: std::collections::HashSet<String> =
        answers.iter().flatten().map(|i| i.id.clone()).collect();
    assert_eq!(ids.len(), 40);
    for (r, issue) in requests.iter().zip(&answers).take(40) {
        if let Ok(issue) = issue {
            assert_eq!(issue.community_id, r.community_id);
            assert_eq!(issue.watcher_household_ids, vec![r.household_id.clone()]);
        }
    }
    let (batches, batched) = h.store.reports.written_together();
    assert!(
        batches >= 1 && batched >= 2,
        "46 reports at once were all written alone ({batches} batches, {batched} reports)"
    );

    let c = &mut h.client;
    for community in [&w.community, &w.other_community] {
        assert_eq!(summary_counts(c, community).await, (20, 0, 0));
        let seqs: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM issue_events WHERE community_id = $1 ORDER BY seq")
                .bind(community)
                .fetch_all(&h.store.db.writer)
                .await
                .unwrap();
        assert_eq!(
            seqs,
            (1..=20).collect::<Vec<i64>>(),
            "one event each, gapless"
        );
        let chain = c
            .verify_audit_trail(pb::VerifyAuditTrailRequest {
                community_id: community.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .verification
            .unwrap();
        assert!(chain.intact && chain.checked == 20, "{chain:?}");
    }
    let timeline = c
        .get_timeline(pb::GetTimelineRequest {
            issue_id: id(0).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, pb::EventKind::Reported as i32);
    h.stop().await;
}

/// A window of the newest reports, read back in pages, whatever the number of
/// older ones: what Open311's lists and the dashboard's open list ask for.
async fn newest_first_windows_page_back_in_time(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let day = 86_400_000_000_i64;
    let now = linli_core::time::now_micros();
    let ts = linli_core::time::to_timestamp;
    // Reported four, three, … days ago down to today, in that order.
    for k in (0..5).rev() {
        c.report_issue(pb::ReportIssueRequest {
            reported_at: Some(ts(now - k * day)),
            ..report(w, &format!("第{k}天前"))
        })
        .await
        .unwrap();
    }
    let list = async |c: &mut Client, r: pb::ListIssuesRequest| {
        let got = c.list_issues(r).await.unwrap().into_inner();
        let titles: Vec<String> = got.issues.into_iter().map(|i| i.title).collect();
        (titles, got.next_page_token)
    };
    let newest = |page_token: String| pb::ListIssuesRequest {
        community_id: w.community.clone(),
        newest_first: true,
        page_size: 2,
        page_token,
        ..Default::default()
    };
    let (first, token) = list(c, newest(String::new())).await;
    assert_eq!(first, ["第0天前", "第1天前"]);
    let (second, token) = list(c, newest(token)).await;
    assert_eq!(second, ["第2天前", "第3天前"]);
    let (last, token) = list(c, newest(token)).await;
    assert_eq!(last, ["第4天前"]);
    assert!(token.is_empty());

    let window = |from: i64, before: Option<i64>| pb::ListIssuesRequest {
        community_id: w.community.clone(),
        newest_first: true,
        reported_from: Some(ts(now - from)),
        reported_before: before.map(|b| ts(now - b)),
        ..Default::default()
    };
    let (recent, _) = list(c, window(5 * day / 2, None)).await;
    assert_eq!(recent, ["第0天前", "第1天前", "第2天前"]);
    let (middle, _) = list(c, window(7 * day / 2, Some(day / 2))).await;
    assert_eq!(middle, ["第1天前", "第2天前", "第3天前"]);
    assert_status(
        c.list_issues(window(day, Some(2 * day))).await,
        Code::InvalidArgument,
        "reported_before",
    );
}

linli_core::backend_tests!(
    newest_first_windows_page_back_in_time,
    reports_at_once_are_written_together_and_whole,
    a_reopened_issue_is_judged_against_its_first_deadline,
    a_claim_straight_from_the_report_acknowledges_it,
    reporting_and_the_happy_path,
    moves_check_state_version_and_time,
    claims_need_registered_cadres,
    concurrent_claims_have_one_winner,
    a_down_people_service_writes_nothing,
    reopen_reject_and_duplicates,
    supervision_escalates_each_breach_once_across_replicas,
    unconfirmed_resolutions_close_by_themselves,
    watch_resumes_from_a_cursor,
    three_rates_on_a_hand_computed_fixture,
    ranking_is_fair_to_small_samples,
    lists_summary_and_audit,
);
