//! The roster import and the demo data, on SQLite and on PostgreSQL.
mod common;

use common::*;
use linli_core::Actor;
use linli_core::testing::Backend;
use linli_people::import::import_roster;
use linli_proto::people::v1 as pb;

fn roster(rows: &[String]) -> String {
    let mut s = String::from(
        "household_ref,compound,building,address,name,gender,birth_date,relation,phone,id_number,tags\n",
    );
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

fn row(household: &str, name: &str, birth: &str, seq: u32, tags: &str) -> String {
    format!(
        "{household},八角亭小区,1栋,八角亭小区1栋{household},{name},女,{birth},户主,1380000{seq:04},{},{tags}",
        id_number(birth, seq)
    )
}

async fn bad_rows_keep_their_household_out(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let (community, _, _) = places(&mut h.client).await;
    let actor = Actor::local("import-test");
    let csv = roster(&[
        row(
            "H1",
            "程桂兰",
            "1936-03-08",
            1,
            "living_alone;hearing_impaired",
        ),
        row("H2", "王建国", "1950-05-05", 2, ""),
        // Line 4: a birth date in the future sinks all of H2.
        row("H2", "王小明", "2999-01-01", 3, ""),
        row("H3", "李浩然", "1990-01-01", 4, "elderly;elderly"),
        row("H4", "朱海涛", "1947-07-08", 5, "lonely"),
        row("H5", "何秀英", "1960-02-02", 6, ""),
        // Line 8: the same ID number as line 7.
        format!(
            "H6,八角亭小区,1栋,x,何秀英二,女,1960-02-02,户主,,{},",
            id_number("1960-02-02", 6)
        ),
    ]);

    let dry = import_roster(&h.store, &actor, &community.id, csv.as_bytes(), true, false)
        .await
        .unwrap();
    assert_eq!(dry.rows, 7);
    assert_eq!(dry.households_imported, 0);
    let households = h
        .client
        .list_households(pb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(households.households.is_empty(), "a dry run writes nothing");

    let report = import_roster(
        &h.store,
        &actor,
        &community.id,
        csv.as_bytes(),
        false,
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.problems.len(), 4, "{report}");
    assert!(
        report.problems[0].starts_with("line 4: birth_date:"),
        "{report}"
    );
    assert!(
        report.problems[1].starts_with("line 5: tags[1]:"),
        "{report}"
    );
    assert!(
        report.problems[2].starts_with("line 6: tags[0]:"),
        "{report}"
    );
    assert!(
        report.problems[3].starts_with("line 8: id_number:"),
        "{report}"
    );
    assert_eq!(
        (
            report.households_imported,
            report.residents_imported,
            report.households_skipped
        ),
        (2, 2, 4),
        "{report}"
    );
    let households = h
        .client
        .list_households(pb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .households;
    let refs: Vec<&str> = households.iter().map(|h| h.external_ref.as_str()).collect();
    assert_eq!(refs, vec!["H1", "H5"], "no half of H2 was imported");
    let cheng = households.iter().find(|h| h.external_ref == "H1").unwrap();
    assert_eq!(cheng.care_level, pb::CareLevel::Intensive as i32);
    assert!(!cheng.compound_id.is_empty() && !cheng.building_id.is_empty());

    // The same file again changes nothing; a fixed file brings in the rest.
    let again = import_roster(
        &h.store,
        &actor,
        &community.id,
        csv.as_bytes(),
        false,
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            again.households_imported,
            again.residents_imported,
            again.households_unchanged,
            again.residents_unchanged
        ),
        (0, 0, 2, 2),
        "{again}"
    );
    let events = h
        .client
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: community.id.clone(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let fixed = csv
        .replace("2999-01-01", "2001-01-01")
        .replace(&id_number("2999-01-01", 3), &id_number("2001-01-01", 3));
    let fixed = roster(
        &fixed
            .lines()
            .skip(1)
            .filter(|l| l.starts_with("H1") || l.starts_with("H2"))
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    let third = import_roster(
        &h.store,
        &actor,
        &community.id,
        fixed.as_bytes(),
        false,
        false,
    )
    .await
    .unwrap();
    assert!(third.problems.is_empty(), "{third}");
    assert_eq!(
        (
            third.households_imported,
            third.residents_imported,
            third.households_unchanged
        ),
        (1, 2, 1),
        "{third}"
    );
    let after = h
        .client
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: community.id.clone(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(after.len() > events.len());

    // A row changed since it was imported is reported, not silently applied.
    let changed = roster(&[row("H1", "程桂兰", "1936-03-08", 1, "living_alone")]);
    let changed = import_roster(
        &h.store,
        &actor,
        &community.id,
        changed.as_bytes(),
        false,
        false,
    )
    .await
    .unwrap();
    assert_eq!(changed.problems.len(), 1, "{changed}");
    assert!(
        changed.problems[0].contains("differs from the row imported before"),
        "{changed}"
    );

    // A file without the expected columns is refused as a whole.
    let err = import_roster(
        &h.store,
        &actor,
        &community.id,
        "name,phone\nx,y\n".as_bytes(),
        false,
        false,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("household_ref"), "{err}");
    h.server.stop().await;
}

async fn the_story_seeds_once(backend: Backend) {
    let mut h = Harness::start(backend).await;
    linli_people::seed::run(&h.store, linli_people::seed::DemoPasswords::Keep)
        .await
        .unwrap();
    let c = &mut h.client;
    let communities = c
        .list_places(pb::ListPlacesRequest {
            kind: pb::PlaceKind::Community as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .places;
    assert_eq!(communities.len(), 1);
    let community = &communities[0];
    assert_eq!(community.name, "双泉社区");
    let summary = c
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.residents, 1258);
    assert_eq!(summary.cadres_registered, 12);
    assert!(
        summary.vulnerable_households > 50 && summary.intensive_care_households > 5,
        "{summary:?}"
    );
    assert_eq!(
        summary.households_paired, summary.vulnerable_households,
        "every vulnerable household has a cadre"
    );

    // 程大娘: 90, alone, intensive care, a full team of three, visited three days ago.
    let cheng = c
        .list_residents(pb::ListResidentsRequest {
            community_id: community.id.clone(),
            tag: pb::VulnerabilityTag::HearingImpaired as i32,
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .residents
        .into_iter()
        .find(|r| r.name == "程桂兰")
        .expect("程大娘 is on the roster");
    assert_eq!(cheng.age, 90);
    let profile = c
        .get_household(pb::GetHouseholdRequest {
            household_id: cheng.household_id.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.care.unwrap().level, pb::CareLevel::Intensive as i32);
    assert_eq!(profile.pairings.len(), 3);
    let compliance = c
        .get_compliance_report(pb::GetComplianceReportRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let entry = compliance
        .entries
        .iter()
        .find(|e| e.household_id == cheng.household_id)
        .unwrap();
    assert!(!entry.overdue);
    assert!(
        compliance.overdue_households > 0,
        "the demo shows some overdue work"
    );
    let ok = c
        .verify_password(pb::VerifyPasswordRequest {
            username: "ruanxf".into(),
            password: linli_people::seed::DEMO_PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.account.unwrap().role, pb::AccountRole::Cadre as i32);

    // Seeding again adds nothing.
    let audit_before = c
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    linli_people::seed::run(&h.store, linli_people::seed::DemoPasswords::Keep)
        .await
        .unwrap();
    let again = c
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, summary);
    let audit_after = c
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    assert!(audit_after.intact);
    assert_eq!(
        audit_after.checked, audit_before.checked,
        "a second seed writes nothing"
    );
    h.server.stop().await;
}

linli_core::backend_tests!(bad_rows_keep_their_household_out, the_story_seeds_once);
