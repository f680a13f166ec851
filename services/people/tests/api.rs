//! Every RPC of the people service over a real socket, on SQLite and on PostgreSQL.
mod common;

use common::*;
use linli_core::testing::Backend;
use linli_proto::people::v1 as pb;
use prost_types::Timestamp;
use tonic::Code;

use pb::VulnerabilityTag as Tag;

const DAY: i64 = 86_400;

fn ts_days_ago(days: i64) -> Timestamp {
    let now = linli_core::time::now_micros() / 1_000_000;
    Timestamp {
        seconds: now - days * DAY,
        nanos: 0,
    }
}

async fn places_and_households(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, compound, building) = places(c).await;
    assert_eq!(compound.community_id, community.id);
    assert_eq!(building.community_id, community.id);
    assert_eq!(community.community_id, community.id);

    // A place must sit under the right kind of parent.
    let wrong = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: pb::PlaceKind::Building as i32,
            parent_id: community.id.clone(),
            name: "9栋".into(),
            code: String::new(),
        })
        .await;
    assert_status(wrong, Code::InvalidArgument, "parent_id");
    let no_parent = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: pb::PlaceKind::Town as i32,
            name: "x".into(),
            ..Default::default()
        })
        .await;
    assert_status(no_parent, Code::InvalidArgument, "parent_id");
    let bad_kind = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: 99,
            name: "x".into(),
            ..Default::default()
        })
        .await;
    assert_status(bad_kind, Code::InvalidArgument, "kind");
    let no_name = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: pb::PlaceKind::County as i32,
            name: "  ".into(),
            ..Default::default()
        })
        .await;
    assert_status(no_name, Code::InvalidArgument, "name");
    let no_key = c
        .create_place(pb::CreatePlaceRequest {
            kind: pb::PlaceKind::County as i32,
            name: "x".into(),
            ..Default::default()
        })
        .await;
    assert_status(no_key, Code::InvalidArgument, "idempotency_key");

    let got = c
        .get_place(pb::GetPlaceRequest {
            place_id: compound.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap();
    assert_eq!(got, compound);
    assert_status(
        c.get_place(pb::GetPlaceRequest {
            place_id: linli_core::new_id(),
        })
        .await,
        Code::NotFound,
        "place",
    );
    assert_status(
        c.get_place(pb::GetPlaceRequest {
            place_id: "nope".into(),
        })
        .await,
        Code::InvalidArgument,
        "place_id",
    );

    // Pages of two over the five places; no place twice, none lost.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_places(pb::ListPlacesRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.places.len() <= 2);
        seen.extend(page.places.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    let only_buildings = c
        .list_places(pb::ListPlacesRequest {
            kind: pb::PlaceKind::Building as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_buildings.places, vec![building.clone()]);
    let children = c
        .list_places(pb::ListPlacesRequest {
            parent_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(children.places, vec![compound.clone()]);
    assert_status(
        c.list_places(pb::ListPlacesRequest {
            page_size: 1_000_000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        c.list_places(pb::ListPlacesRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );

    // Households: idempotent by key; the same key with another body is refused.
    let req = pb::CreateHouseholdRequest {
        idempotency_key: key(),
        community_id: community.id.clone(),
        compound_id: compound.id.clone(),
        building_id: building.id.clone(),
        address: "八角亭小区3栋2单元402".into(),
        external_ref: "BJT-0402".into(),
    };
    let first = c
        .create_household(req.clone())
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();
    let again = c
        .create_household(req.clone())
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();
    assert_eq!(first, again);
    let changed = c
        .create_household(pb::CreateHouseholdRequest {
            address: "elsewhere".into(),
            ..req.clone()
        })
        .await;
    assert_status(changed, Code::InvalidArgument, "idempotency_key");
    assert_eq!(first.care_level, pb::CareLevel::None as i32);
    assert_eq!(first.version, 1);

    let other_compound = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: pb::PlaceKind::Compound as i32,
            parent_id: community.id.clone(),
            name: "新村".into(),
            code: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap();
    let mismatch = c
        .create_household(pb::CreateHouseholdRequest {
            idempotency_key: key(),
            compound_id: other_compound.id.clone(),
            ..req.clone()
        })
        .await;
    assert_status(mismatch, Code::InvalidArgument, "building_id");
    let nowhere = c
        .create_household(pb::CreateHouseholdRequest {
            idempotency_key: key(),
            community_id: linli_core::new_id(),
            compound_id: String::new(),
            building_id: String::new(),
            ..req.clone()
        })
        .await;
    assert_status(nowhere, Code::NotFound, "community");
    let no_address = c
        .create_household(pb::CreateHouseholdRequest {
            idempotency_key: key(),
            address: " ".into(),
            ..req.clone()
        })
        .await;
    assert_status(no_address, Code::InvalidArgument, "address");

    // Care-level filter.
    let alone = household(c, &community, "八角亭小区1栋1单元101").await;
    c.add_resident(resident(
        &alone,
        "程桂兰",
        "1936-03-08",
        1,
        &[Tag::LivingAlone],
    ))
    .await
    .unwrap();
    let all = c
        .list_households(pb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.households.len(), 2);
    let cared = c
        .list_households(pb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            min_care_level: pb::CareLevel::Priority as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cared
            .households
            .iter()
            .map(|h| h.id.as_str())
            .collect::<Vec<_>>(),
        vec![alone.id.as_str()]
    );
    let in_compound = c
        .list_households(pb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            compound_id: compound.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(in_compound.households.len(), 1);
    assert_status(
        c.list_households(pb::ListHouseholdsRequest::default())
            .await,
        Code::InvalidArgument,
        "community_id",
    );
    h.server.stop().await;
}

async fn residents_and_care(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let hh = household(c, &community, "八角亭小区1栋1单元101").await;

    // 程大娘: 90, alone, hard of hearing, unsteady: intensive care, a visit a week.
    let cheng = c
        .add_resident(resident(
            &hh,
            "程桂兰",
            "1936-03-08",
            1,
            &[Tag::LivingAlone, Tag::HearingImpaired, Tag::LimitedMobility],
        ))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    assert_eq!(
        cheng.age,
        linli_people::domain::age_on(
            chrono::NaiveDate::from_ymd_opt(1936, 3, 8).unwrap(),
            chrono::Utc::now().date_naive()
        )
    );
    assert_eq!(
        cheng.phone, "13800000001",
        "in full to the admin who entered it"
    );
    let seen_by_cadre = c
        .get_resident(as_role(
            pb::GetResidentRequest {
                resident_id: cheng.id.clone(),
                view: 0,
            },
            "cadre",
        ))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    assert_eq!(seen_by_cadre.phone, "138****0001", "masked by default");
    assert!(seen_by_cadre.id_number.starts_with("421224********"));
    let profile = c
        .get_household(pb::GetHouseholdRequest {
            household_id: hh.id.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let care = profile.care.unwrap();
    assert_eq!(
        (care.level, care.visit_every_days),
        (pb::CareLevel::Intensive as i32, 7)
    );
    assert_eq!(profile.household.as_ref().unwrap().member_count, 1);
    assert_eq!(profile.household.unwrap().visit_every_days, 7);

    // Views: the full one only for roles that need personal data.
    let full_supervisor = c
        .get_resident(as_role(
            pb::GetResidentRequest {
                resident_id: cheng.id.clone(),
                view: pb::ResidentView::Full as i32,
            },
            "supervisor",
        ))
        .await;
    assert_status(full_supervisor, Code::PermissionDenied, "");
    let full_cadre = c
        .get_resident(as_role(
            pb::GetResidentRequest {
                resident_id: cheng.id.clone(),
                view: pb::ResidentView::Full as i32,
            },
            "cadre",
        ))
        .await;
    assert_status(full_cadre, Code::PermissionDenied, "");
    let full = c
        .get_resident(as_role(
            pb::GetResidentRequest {
                resident_id: cheng.id.clone(),
                view: pb::ResidentView::Full as i32,
            },
            "community_worker",
        ))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    assert_eq!(full.phone, "13800000001");
    assert_eq!(full.id_number, id_number("1936-03-08", 1));
    assert_status(
        c.get_resident(pb::GetResidentRequest {
            resident_id: cheng.id.clone(),
            view: 9,
        })
        .await,
        Code::InvalidArgument,
        "view",
    );
    assert_status(
        c.get_resident(as_role(
            pb::GetResidentRequest {
                resident_id: cheng.id.clone(),
                view: 0,
            },
            "mayor",
        ))
        .await,
        Code::Unauthenticated,
        "",
    );

    // Bad input, each naming its field; nothing is written.
    let base = resident(&hh, "王建国", "1950-05-05", 2, &[]);
    let cases: Vec<(pb::AddResidentRequest, &str)> = vec![
        (
            pb::AddResidentRequest {
                name: "".into(),
                ..base.clone()
            },
            "name",
        ),
        (
            pb::AddResidentRequest {
                name: "x".repeat(65),
                ..base.clone()
            },
            "name",
        ),
        (
            pb::AddResidentRequest {
                gender: 0,
                ..base.clone()
            },
            "gender",
        ),
        (
            pb::AddResidentRequest {
                gender: 7,
                ..base.clone()
            },
            "gender",
        ),
        (
            pb::AddResidentRequest {
                relation: 42,
                ..base.clone()
            },
            "relation",
        ),
        (
            pb::AddResidentRequest {
                birth_date: "2999-01-01".into(),
                id_number: String::new(),
                ..base.clone()
            },
            "birth_date",
        ),
        (
            pb::AddResidentRequest {
                birth_date: "05/05/1950".into(),
                ..base.clone()
            },
            "birth_date",
        ),
        (
            pb::AddResidentRequest {
                birth_date: "1951-05-05".into(),
                ..base.clone()
            },
            "birth_date",
        ),
        (
            pb::AddResidentRequest {
                phone: "12345".into(),
                ..base.clone()
            },
            "phone",
        ),
        (
            pb::AddResidentRequest {
                id_number: "421224195005050020".into(),
                ..base.clone()
            },
            "id_number",
        ),
        (
            pb::AddResidentRequest {
                id_number: "42122419500505002".into(),
                ..base.clone()
            },
            "id_number",
        ),
        (
            pb::AddResidentRequest {
                tags: vec![99],
                ..base.clone()
            },
            "tags[0]",
        ),
        (
            pb::AddResidentRequest {
                tags: [
                    Tag::LivingAlone,
                    Tag::Elderly,
                    Tag::Disabled,
                    Tag::LowIncome,
                    Tag::Elderly,
                ]
                .iter()
                .map(|t| *t as i32)
                .collect(),
                ..base.clone()
            },
            "tags[4]",
        ),
        (
            pb::AddResidentRequest {
                household_id: "x".into(),
                ..base.clone()
            },
            "household_id",
        ),
        (
            pb::AddResidentRequest {
                idempotency_key: String::new(),
                ..base.clone()
            },
            "idempotency_key",
        ),
    ];
    for (req, field) in cases {
        assert_status(c.add_resident(req).await, Code::InvalidArgument, field);
    }
    assert_status(
        c.add_resident(pb::AddResidentRequest {
            household_id: linli_core::new_id(),
            ..base.clone()
        })
        .await,
        Code::NotFound,
        "household",
    );
    let listed = c
        .list_residents(pb::ListResidentsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.residents.len(),
        1,
        "no bad request left a resident behind"
    );

    // One ID number, one household.
    let elsewhere = household(c, &community, "八角亭小区2栋1单元101").await;
    let twin = pb::AddResidentRequest {
        household_id: elsewhere.id.clone(),
        ..resident(&hh, "程桂兰", "1936-03-08", 1, &[])
    };
    assert_status(c.add_resident(twin).await, Code::AlreadyExists, "");

    // Idempotent retry.
    let wang = c
        .add_resident(base.clone())
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    assert_eq!(
        c.add_resident(base.clone())
            .await
            .unwrap()
            .into_inner()
            .resident
            .unwrap(),
        wang
    );

    // Tag filter.
    let alone = c
        .list_residents(pb::ListResidentsRequest {
            community_id: community.id.clone(),
            tag: Tag::LivingAlone as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        alone
            .residents
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        vec!["程桂兰"]
    );
    let in_house = c
        .list_residents(as_role(
            pb::ListResidentsRequest {
                community_id: community.id.clone(),
                household_id: hh.id.clone(),
                view: pb::ResidentView::Full as i32,
                ..Default::default()
            },
            "cadre",
        ))
        .await;
    assert_status(in_house, Code::PermissionDenied, "");

    // Update with an expected version; stale versions are refused.
    let stale = pb::UpdateResidentRequest {
        resident_id: wang.id.clone(),
        expected_version: wang.version + 1,
        tags: Some(pb::TagSet {
            tags: vec![Tag::Disabled as i32],
        }),
        ..Default::default()
    };
    assert_status(c.update_resident(stale).await, Code::Aborted, "");
    let no_version = pb::UpdateResidentRequest {
        resident_id: wang.id.clone(),
        phone: Some("13912345678".into()),
        ..Default::default()
    };
    assert_status(
        c.update_resident(no_version).await,
        Code::InvalidArgument,
        "expected_version",
    );
    let nothing = pb::UpdateResidentRequest {
        resident_id: wang.id.clone(),
        expected_version: wang.version,
        ..Default::default()
    };
    assert_status(
        c.update_resident(nothing).await,
        Code::InvalidArgument,
        "phone",
    );
    let bad_phone = pb::UpdateResidentRequest {
        resident_id: wang.id.clone(),
        expected_version: wang.version,
        phone: Some("99".into()),
        ..Default::default()
    };
    assert_status(
        c.update_resident(bad_phone).await,
        Code::InvalidArgument,
        "phone",
    );
    let updated = c
        .update_resident(as_role(
            pb::UpdateResidentRequest {
                resident_id: wang.id.clone(),
                expected_version: wang.version,
                phone: Some("139 1234 5678".into()),
                tags: Some(pb::TagSet {
                    tags: vec![Tag::Disabled as i32],
                }),
                ..Default::default()
            },
            "community_worker",
        ))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    assert_eq!(updated.version, wang.version + 1);
    assert_eq!(updated.phone, "13912345678");
    assert_eq!(updated.tags, vec![Tag::Disabled as i32]);

    // Moving out: 程大娘's household drops out of care once nobody lives there.
    let removed = c
        .remove_resident(pb::RemoveResidentRequest {
            resident_id: cheng.id.clone(),
            expected_version: cheng.version,
            reason: "moved to her daughter's".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    assert!(removed.removed_at.is_some());
    assert_status(
        c.remove_resident(pb::RemoveResidentRequest {
            resident_id: cheng.id.clone(),
            expected_version: removed.version,
            reason: String::new(),
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    let after = c
        .get_household(pb::GetHouseholdRequest {
            household_id: hh.id.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.household.as_ref().unwrap().member_count,
        1,
        "王建国 still lives there"
    );
    assert_eq!(
        after.care.unwrap().level,
        pb::CareLevel::Priority as i32,
        "王建国 is now disabled"
    );
    assert_eq!(
        c.get_resident(pb::GetResidentRequest {
            resident_id: cheng.id.clone(),
            view: 0
        })
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap()
        .removed_at,
        removed.removed_at
    );
    h.server.stop().await;
}

async fn units_cadres_and_registration(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let town_community = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: pb::PlaceKind::Community as i32,
            parent_id: community.parent_id.clone(),
            name: "月亮山社区".into(),
            code: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap();

    let unit_req = pb::CreateUnitRequest {
        idempotency_key: key(),
        name: "通山县纪委监委".into(),
    };
    let unit = c
        .create_unit(unit_req.clone())
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    assert_eq!(
        c.create_unit(unit_req)
            .await
            .unwrap()
            .into_inner()
            .unit
            .unwrap(),
        unit
    );
    assert_status(
        c.create_unit(pb::CreateUnitRequest {
            idempotency_key: key(),
            name: "通山县纪委监委".into(),
        })
        .await,
        Code::AlreadyExists,
        "",
    );
    assert_status(
        c.create_unit(pb::CreateUnitRequest {
            idempotency_key: key(),
            name: "".into(),
        })
        .await,
        Code::InvalidArgument,
        "name",
    );
    assert_eq!(
        c.list_units(pb::ListUnitsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .units,
        vec![unit.clone()]
    );
    assert_eq!(
        c.get_unit(pb::GetUnitRequest {
            unit_id: unit.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap(),
        unit
    );
    assert_status(
        c.get_unit(pb::GetUnitRequest {
            unit_id: linli_core::new_id(),
        })
        .await,
        Code::NotFound,
        "unit",
    );

    let cadre_req = pb::CreateCadreRequest {
        idempotency_key: key(),
        unit_id: unit.id.clone(),
        name: "阮晓峰".into(),
        phone: "13971501001".into(),
        title: "干部".into(),
    };
    let ruan = c
        .create_cadre(cadre_req.clone())
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap();
    assert_eq!(
        c.create_cadre(cadre_req.clone())
            .await
            .unwrap()
            .into_inner()
            .cadre
            .unwrap(),
        ruan
    );
    assert_status(
        c.create_cadre(pb::CreateCadreRequest {
            idempotency_key: key(),
            unit_id: linli_core::new_id(),
            ..cadre_req.clone()
        })
        .await,
        Code::NotFound,
        "unit",
    );
    assert_status(
        c.create_cadre(pb::CreateCadreRequest {
            idempotency_key: key(),
            phone: "1".into(),
            ..cadre_req.clone()
        })
        .await,
        Code::InvalidArgument,
        "phone",
    );
    let liu = c
        .create_cadre(pb::CreateCadreRequest {
            idempotency_key: key(),
            name: "刘海元".into(),
            ..cadre_req.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap();

    // requested → active → ended.
    let reg = c
        .request_registration(pb::RequestRegistrationRequest {
            idempotency_key: key(),
            cadre_id: ruan.id.clone(),
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    assert_eq!(reg.state, pb::RegistrationState::Requested as i32);
    let checked = c
        .check_registration(pb::CheckRegistrationRequest {
            cadre_id: ruan.id.clone(),
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!checked.registered, "requested is not registered");
    let second = c
        .request_registration(pb::RequestRegistrationRequest {
            idempotency_key: key(),
            cadre_id: ruan.id.clone(),
            community_id: town_community.id.clone(),
        })
        .await
        .unwrap_err();
    // The refusal names the cadre and the community, not only their ids.
    assert_eq!(second.code(), Code::FailedPrecondition, "{second:?}");
    assert!(
        second.message().contains(&ruan.name) && second.message().contains(&community.name),
        "{second:?}"
    );
    assert_status(
        c.approve_registration(pb::ApproveRegistrationRequest {
            registration_id: reg.id.clone(),
            expected_version: reg.version + 5,
            active_from: None,
        })
        .await,
        Code::Aborted,
        "",
    );
    let active = c
        .approve_registration(pb::ApproveRegistrationRequest {
            registration_id: reg.id.clone(),
            expected_version: reg.version,
            active_from: None,
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    assert_eq!(active.state, pb::RegistrationState::Active as i32);
    assert!(active.activated_at.is_some());
    assert_status(
        c.approve_registration(pb::ApproveRegistrationRequest {
            registration_id: reg.id.clone(),
            expected_version: active.version,
            active_from: None,
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    let checked = c
        .check_registration(pb::CheckRegistrationRequest {
            cadre_id: ruan.id.clone(),
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(checked.registered);
    assert_eq!(checked.registration.unwrap().id, reg.id);
    assert!(
        !c.check_registration(pb::CheckRegistrationRequest {
            cadre_id: liu.id.clone(),
            community_id: community.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .registered
    );
    assert_status(
        c.check_registration(pb::CheckRegistrationRequest {
            cadre_id: ruan.id.clone(),
            community_id: linli_core::new_id(),
        })
        .await,
        Code::NotFound,
        "community",
    );

    let got = c
        .get_cadre(pb::GetCadreRequest {
            cadre_id: ruan.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.cadre.unwrap(), ruan);
    assert_eq!(
        got.registration.unwrap().state,
        pb::RegistrationState::Active as i32
    );
    let here = c
        .list_cadres(pb::ListCadresRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(here.cadres, vec![ruan.clone()]);
    let of_unit = c
        .list_cadres(pb::ListCadresRequest {
            unit_id: unit.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_unit.cadres.len(), 2);

    // Ending the registration ends the cadre's pairings in that community.
    let hh = household(c, &community, "八角亭小区1栋1单元101").await;
    let pairing = c
        .pair_household(pb::PairHouseholdRequest {
            idempotency_key: key(),
            household_id: hh.id.clone(),
            role: pb::PairingRole::Cadre as i32,
            cadre_id: ruan.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pairing
        .unwrap();
    let ended = c
        .end_registration(pb::EndRegistrationRequest {
            registration_id: reg.id.clone(),
            expected_version: active.version,
            reason: "调岗".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    assert_eq!(ended.state, pb::RegistrationState::Ended as i32);
    assert_eq!(ended.end_reason, "调岗");
    assert!(
        !c.check_registration(pb::CheckRegistrationRequest {
            cadre_id: ruan.id.clone(),
            community_id: community.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .registered
    );
    let pairings = c
        .list_pairings(pb::ListPairingsRequest {
            household_id: hh.id.clone(),
            include_ended: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pairings.pairings.len(), 1);
    assert_eq!(pairings.pairings[0].id, pairing.id);
    assert!(pairings.pairings[0].ended_at.is_some());
    assert_status(
        c.end_registration(pb::EndRegistrationRequest {
            registration_id: reg.id.clone(),
            expected_version: ended.version,
            reason: String::new(),
        })
        .await,
        Code::FailedPrecondition,
        "",
    );

    // After ending, a new registration elsewhere is allowed.
    let moved = c
        .request_registration(pb::RequestRegistrationRequest {
            idempotency_key: key(),
            cadre_id: ruan.id.clone(),
            community_id: town_community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    let ended_list = c
        .list_registrations(pb::ListRegistrationsRequest {
            cadre_id: ruan.id.clone(),
            state: pb::RegistrationState::Ended as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ended_list
            .registrations
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec![reg.id.as_str()]
    );
    let all = c
        .list_registrations(pb::ListRegistrationsRequest {
            cadre_id: ruan.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.registrations.len(), 2);
    let by_place = c
        .list_registrations(pb::ListRegistrationsRequest {
            community_id: town_community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_place.registrations, vec![moved]);
    assert_status(
        c.list_registrations(pb::ListRegistrationsRequest {
            state: 12,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "state",
    );
    h.server.stop().await;
}

async fn pairings_and_coverage(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let cheng = household(c, &community, "八角亭小区1栋1单元101").await;
    c.add_resident(resident(
        &cheng,
        "程桂兰",
        "1936-03-08",
        1,
        &[Tag::LivingAlone],
    ))
    .await
    .unwrap();
    let young = household(c, &community, "八角亭小区1栋1单元102").await;
    c.add_resident(resident(&young, "李浩然", "1990-01-01", 2, &[]))
        .await
        .unwrap();
    let (unit, ruan) = registered_cadre(c, &community, "阮晓峰").await;
    let stranger = c
        .create_cadre(pb::CreateCadreRequest {
            idempotency_key: key(),
            unit_id: unit.id.clone(),
            name: "外人".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap();

    let pair = |role: pb::PairingRole, cadre: &str, name: &str| pb::PairHouseholdRequest {
        idempotency_key: key(),
        household_id: cheng.id.clone(),
        role: role as i32,
        cadre_id: cadre.into(),
        member_name: name.into(),
        member_phone: String::new(),
    };
    assert_status(
        c.pair_household(pair(pb::PairingRole::Cadre, &stranger.id, ""))
            .await,
        Code::FailedPrecondition,
        "cadre 外人 (",
    );
    assert_status(
        c.pair_household(pair(pb::PairingRole::Cadre, "", "")).await,
        Code::InvalidArgument,
        "cadre_id",
    );
    assert_status(
        c.pair_household(pair(pb::PairingRole::MedicalWorker, &ruan.id, ""))
            .await,
        Code::InvalidArgument,
        "cadre_id",
    );
    assert_status(
        c.pair_household(pair(pb::PairingRole::MedicalWorker, "", ""))
            .await,
        Code::InvalidArgument,
        "member_name",
    );
    assert_status(
        c.pair_household(pair(pb::PairingRole::Unspecified, "", "x"))
            .await,
        Code::InvalidArgument,
        "role",
    );

    let req = pair(pb::PairingRole::Cadre, &ruan.id, "");
    let p1 = c
        .pair_household(req.clone())
        .await
        .unwrap()
        .into_inner()
        .pairing
        .unwrap();
    assert_eq!(p1.member_name, "阮晓峰");
    assert_eq!(
        c.pair_household(req)
            .await
            .unwrap()
            .into_inner()
            .pairing
            .unwrap(),
        p1,
        "idempotent"
    );
    assert_status(
        c.pair_household(pair(pb::PairingRole::Cadre, &ruan.id, ""))
            .await,
        Code::AlreadyExists,
        "",
    );

    // Coverage before the team is complete: 李 has nobody; 程 is vulnerable and has a cadre.
    let cov = c
        .get_coverage_report(pb::GetCoverageReportRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            cov.households_total,
            cov.households_paired,
            cov.vulnerable_total
        ),
        (2, 1, 1)
    );
    assert_eq!(cov.unpaired_household_ids, vec![young.id.clone()]);
    assert!(cov.vulnerable_without_cadre_ids.is_empty());

    c.pair_household(pair(pb::PairingRole::CommunityWorker, "", "吴晶"))
        .await
        .unwrap();
    // Two more want the last place at once: exactly one gets it.
    let mut racers = Vec::new();
    for name in ["李医生", "张医生", "赵医生", "钱医生"] {
        let mut client = c.clone();
        let req = pair(pb::PairingRole::MedicalWorker, "", name);
        racers.push(tokio::spawn(
            async move { client.pair_household(req).await },
        ));
    }
    let mut won = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => won += 1,
            Err(s) => assert!(
                matches!(s.code(), Code::FailedPrecondition | Code::Aborted),
                "{s:?}"
            ),
        }
    }
    assert_eq!(won, 1);
    let fourth = c
        .pair_household(pair(pb::PairingRole::MedicalWorker, "", "孙医生"))
        .await;
    assert_status(fourth, Code::FailedPrecondition, "三包一");
    let team = c
        .list_pairings(pb::ListPairingsRequest {
            household_id: cheng.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(team.pairings.len(), 3);
    let profile = c
        .get_household(pb::GetHouseholdRequest {
            household_id: cheng.id.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.pairings.len(), 3);

    // Ending the cadre's pairing leaves 程大娘 without a cadre, which the report shows.
    let ended = c
        .end_pairing(pb::EndPairingRequest {
            pairing_id: p1.id.clone(),
            reason: "换人".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pairing
        .unwrap();
    assert!(ended.ended_at.is_some());
    assert_status(
        c.end_pairing(pb::EndPairingRequest {
            pairing_id: p1.id.clone(),
            reason: String::new(),
        })
        .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        c.end_pairing(pb::EndPairingRequest {
            pairing_id: linli_core::new_id(),
            reason: String::new(),
        })
        .await,
        Code::NotFound,
        "pairing",
    );
    let cov = c
        .get_coverage_report(pb::GetCoverageReportRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cov.vulnerable_without_cadre_ids, vec![cheng.id.clone()]);
    let by_cadre = c
        .list_pairings(pb::ListPairingsRequest {
            cadre_id: ruan.id.clone(),
            include_ended: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_cadre.pairings.len(), 1);
    let current = c
        .list_pairings(pb::ListPairingsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.pairings.len(), 2);
    h.server.stop().await;
}

async fn duty_and_attendance(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let (unit, ruan) = registered_cadre(c, &community, "阮晓峰").await;
    let song = c
        .create_cadre(pb::CreateCadreRequest {
            idempotency_key: key(),
            unit_id: unit.id.clone(),
            name: "宋成琳".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap();
    let check_in = |cadre: &str, at: Option<Timestamp>| pb::CheckInRequest {
        idempotency_key: key(),
        cadre_id: cadre.into(),
        community_id: community.id.clone(),
        at,
        activity: "卡点值守".into(),
    };
    assert_status(
        c.check_in(check_in(&song.id, None)).await,
        Code::FailedPrecondition,
        &format!(
            "cadre 宋成琳 ({}) is not actively registered with community {} (",
            song.id, community.name
        ),
    );
    register(c, &song, &community).await;

    // This week: 阮 on two different days (one of them twice), 宋 not at all.
    let now = linli_core::time::now_micros();
    let (week_start, _) =
        linli_people::domain::week_bounds(now, linli_people::default_utc_offset());
    let in_week = |hours: i64| Timestamp {
        seconds: (week_start / 1_000_000 + hours * 3600).min(now / 1_000_000 - 1),
        nanos: 0,
    };
    let req = check_in(&ruan.id, Some(in_week(1)));
    let first = c
        .check_in(req.clone())
        .await
        .unwrap()
        .into_inner()
        .check_in
        .unwrap();
    assert_eq!(
        c.check_in(req)
            .await
            .unwrap()
            .into_inner()
            .check_in
            .unwrap(),
        first,
        "idempotent"
    );
    c.check_in(check_in(&ruan.id, Some(in_week(2))))
        .await
        .unwrap();
    let now_ci = c
        .check_in(check_in(&ruan.id, None))
        .await
        .unwrap()
        .into_inner()
        .check_in
        .unwrap();
    assert_status(
        c.check_in(check_in(&ruan.id, Some(ts_days_ago(-2)))).await,
        Code::InvalidArgument,
        "at",
    );
    assert_status(
        c.check_in(check_in(
            &ruan.id,
            Some(Timestamp {
                seconds: 0,
                nanos: 2_000_000_000,
            }),
        ))
        .await,
        Code::InvalidArgument,
        "at",
    );
    assert_status(
        c.check_in(pb::CheckInRequest {
            activity: "x".repeat(501),
            ..check_in(&ruan.id, None)
        })
        .await,
        Code::InvalidArgument,
        "activity",
    );
    // Last week's check-in does not count for this week.
    c.check_in(check_in(&song.id, Some(ts_days_ago(8))))
        .await
        .unwrap();

    let report = c
        .get_attendance_report(pb::GetAttendanceReportRequest {
            community_id: community.id.clone(),
            week_of: now_ci.at,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.week_start.unwrap().seconds, week_start / 1_000_000);
    assert_eq!(report.units.len(), 1);
    let u = &report.units[0];
    assert_eq!(
        (u.cadres_registered, u.cadres_present, u.check_ins),
        (2, 1, 3)
    );
    assert!((u.attendance_rate - 0.5).abs() < 1e-9);
    let r = report
        .cadres
        .iter()
        .find(|a| a.cadre_id == ruan.id)
        .unwrap();
    assert_eq!(r.check_ins, 3);
    assert!(r.days_present >= 1 && r.days_present <= 3);
    let s = report
        .cadres
        .iter()
        .find(|a| a.cadre_id == song.id)
        .unwrap();
    assert_eq!((s.check_ins, s.days_present), (0, 0));
    let by_unit = c
        .get_attendance_report(pb::GetAttendanceReportRequest {
            unit_id: unit.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_unit.units[0].cadres_registered, 2);
    assert_status(
        c.get_attendance_report(pb::GetAttendanceReportRequest::default())
            .await,
        Code::InvalidArgument,
        "community_id",
    );

    let mine = c
        .list_check_ins(pb::ListCheckInsRequest {
            cadre_id: ruan.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.check_ins.len(), 3);
    let old = c
        .list_check_ins(pb::ListCheckInsRequest {
            community_id: community.id.clone(),
            to: Some(ts_days_ago(7)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        old.check_ins
            .iter()
            .map(|c| c.cadre_id.as_str())
            .collect::<Vec<_>>(),
        vec![song.id.as_str()]
    );
    let backwards = c
        .list_check_ins(pb::ListCheckInsRequest {
            from: Some(ts_days_ago(1)),
            to: Some(ts_days_ago(3)),
            ..Default::default()
        })
        .await;
    assert_status(backwards, Code::InvalidArgument, "to");
    h.server.stop().await;
}

async fn visits_and_compliance(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let (_, ruan) = registered_cadre(c, &community, "阮晓峰").await;
    let cheng = household(c, &community, "1栋101").await;
    c.add_resident(resident(
        &cheng,
        "程桂兰",
        "1936-03-08",
        1,
        &[Tag::LivingAlone],
    ))
    .await
    .unwrap();
    let zhu = household(c, &community, "1栋102").await;
    c.add_resident(resident(
        &zhu,
        "朱海涛",
        "1947-07-08",
        2,
        &[Tag::LivingAlone, Tag::ChronicIllness],
    ))
    .await
    .unwrap();
    let never = household(c, &community, "1栋103").await;
    c.add_resident(resident(
        &never,
        "何桂兰",
        "1940-01-01",
        3,
        &[Tag::LivingAlone],
    ))
    .await
    .unwrap();
    let fine = household(c, &community, "1栋104").await;
    c.add_resident(resident(&fine, "李浩然", "1990-01-01", 4, &[]))
        .await
        .unwrap();

    let visit =
        |hh: &pb::Household, days_ago: i64, outcome: pb::VisitOutcome| pb::LogVisitRequest {
            idempotency_key: key(),
            household_id: hh.id.clone(),
            cadre_id: ruan.id.clone(),
            at: Some(ts_days_ago(days_ago)),
            kind: pb::VisitKind::HomeVisit as i32,
            outcome: outcome as i32,
            note: "敲门要耐心".into(),
        };
    // 程: reached 10 days ago, then nobody answered 2 days ago: 3 days overdue.
    let req = visit(&cheng, 10, pb::VisitOutcome::Ok);
    let v = c
        .log_visit(req.clone())
        .await
        .unwrap()
        .into_inner()
        .visit
        .unwrap();
    assert_eq!(
        c.log_visit(req).await.unwrap().into_inner().visit.unwrap(),
        v,
        "idempotent"
    );
    c.log_visit(visit(&cheng, 2, pb::VisitOutcome::NotHome))
        .await
        .unwrap();
    // 朱: reached 2 days ago: fine.
    c.log_visit(visit(&zhu, 2, pb::VisitOutcome::Ok))
        .await
        .unwrap();
    assert_status(
        c.log_visit(pb::LogVisitRequest {
            kind: 0,
            ..visit(&zhu, 1, pb::VisitOutcome::Ok)
        })
        .await,
        Code::InvalidArgument,
        "kind",
    );
    assert_status(
        c.log_visit(pb::LogVisitRequest {
            outcome: 9,
            ..visit(&zhu, 1, pb::VisitOutcome::Ok)
        })
        .await,
        Code::InvalidArgument,
        "outcome",
    );
    assert_status(
        c.log_visit(visit(&zhu, -3, pb::VisitOutcome::Ok)).await,
        Code::InvalidArgument,
        "at",
    );
    assert_status(
        c.log_visit(pb::LogVisitRequest {
            cadre_id: String::new(),
            ..visit(&zhu, 1, pb::VisitOutcome::Ok)
        })
        .await,
        Code::InvalidArgument,
        "cadre_id",
    );

    let report = c
        .get_compliance_report(pb::GetComplianceReportRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (report.vulnerable_households, report.overdue_households),
        (3, 1)
    );
    let top = &report.entries[0];
    assert_eq!(top.household_id, cheng.id);
    assert!(top.overdue);
    assert!(
        (3 * DAY - 60..=3 * DAY + 60).contains(&top.overdue_seconds),
        "{}",
        top.overdue_seconds
    );
    assert_eq!(
        top.last_visit_at.as_ref().unwrap().seconds,
        v.at.as_ref().unwrap().seconds
    );
    let newcomer = report
        .entries
        .iter()
        .find(|e| e.household_id == never.id)
        .unwrap();
    assert!(!newcomer.overdue && newcomer.last_visit_at.is_none());
    assert!(report.entries.iter().all(|e| e.household_id != fine.id));

    // Eight days on, the never-visited household is overdue too.
    let later = Timestamp {
        seconds: ts_days_ago(-8).seconds,
        nanos: 0,
    };
    let report = c
        .get_compliance_report(pb::GetComplianceReportRequest {
            community_id: community.id.clone(),
            as_of: Some(later),
            overdue_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.overdue_households, 3);
    assert_eq!(report.entries.len(), 3);
    assert_eq!(
        report.entries[0].household_id, cheng.id,
        "most overdue first"
    );
    // As of twenty days ago, nothing existed yet.
    let before = c
        .get_compliance_report(pb::GetComplianceReportRequest {
            community_id: community.id.clone(),
            as_of: Some(ts_days_ago(20)),
            overdue_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.vulnerable_households, 0);

    let visits = c
        .list_visits(pb::ListVisitsRequest {
            household_id: cheng.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(visits.visits.len(), 2);
    let by_cadre = c
        .list_visits(pb::ListVisitsRequest {
            cadre_id: ruan.id.clone(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_cadre.visits.len(), 2);
    let rest = c
        .list_visits(pb::ListVisitsRequest {
            cadre_id: ruan.id.clone(),
            page_size: 2,
            page_token: by_cadre.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.visits.len(), 1);
    assert!(rest.next_page_token.is_empty());
    assert_status(
        c.get_compliance_report(pb::GetComplianceReportRequest {
            community_id: linli_core::new_id(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "community",
    );
    h.server.stop().await;
}

async fn accounts(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let (_, ruan) = registered_cadre(c, &community, "阮晓峰").await;
    let account = |username: &str, role: pb::AccountRole| pb::CreateAccountRequest {
        idempotency_key: key(),
        username: username.into(),
        password: "correct horse battery".into(),
        role: role as i32,
        community_id: String::new(),
        cadre_id: String::new(),
        resident_id: String::new(),
    };
    let req = account("admin", pb::AccountRole::Admin);
    let admin = c
        .create_account(req.clone())
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(
        c.create_account(req)
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap(),
        admin,
        "idempotent"
    );
    assert_status(
        c.create_account(account("admin", pb::AccountRole::Supervisor))
            .await,
        Code::AlreadyExists,
        "",
    );
    assert_status(
        c.create_account(account("Bad Name", pb::AccountRole::Admin))
            .await,
        Code::InvalidArgument,
        "username",
    );
    assert_status(
        c.create_account(pb::CreateAccountRequest {
            password: "short".into(),
            ..account("x1x", pb::AccountRole::Admin)
        })
        .await,
        Code::InvalidArgument,
        "password",
    );
    assert_status(
        c.create_account(account("worker", pb::AccountRole::CommunityWorker))
            .await,
        Code::InvalidArgument,
        "community_id",
    );
    assert_status(
        c.create_account(pb::CreateAccountRequest {
            community_id: community.id.clone(),
            ..account("ruan", pb::AccountRole::Cadre)
        })
        .await,
        Code::InvalidArgument,
        "cadre_id",
    );
    assert_status(
        c.create_account(account("who", pb::AccountRole::Unspecified))
            .await,
        Code::InvalidArgument,
        "role",
    );
    let cadre = c
        .create_account(pb::CreateAccountRequest {
            community_id: community.id.clone(),
            cadre_id: ruan.id.clone(),
            ..account("ruanxf", pb::AccountRole::Cadre)
        })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(cadre.role, pb::AccountRole::Cadre as i32);

    assert_eq!(
        c.get_account(pb::GetAccountRequest {
            account_id: admin.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap(),
        admin
    );
    let cadres = c
        .list_accounts(pb::ListAccountsRequest {
            role: pb::AccountRole::Cadre as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cadres.accounts, vec![cadre.clone()]);
    let here = c
        .list_accounts(pb::ListAccountsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(here.accounts.len(), 1);

    let ok = c
        .verify_password(pb::VerifyPasswordRequest {
            username: "ruanxf".into(),
            password: "correct horse battery".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.account.unwrap(), cadre);
    assert_status(
        c.verify_password(pb::VerifyPasswordRequest {
            username: "ruanxf".into(),
            password: "wrong horse".into(),
        })
        .await,
        Code::Unauthenticated,
        "",
    );
    assert_status(
        c.verify_password(pb::VerifyPasswordRequest {
            username: "nobody".into(),
            password: "correct horse battery".into(),
        })
        .await,
        Code::Unauthenticated,
        "",
    );
    assert_status(
        c.verify_password(pb::VerifyPasswordRequest::default())
            .await,
        Code::InvalidArgument,
        "username",
    );
    h.server.stop().await;
}

async fn summary_and_audit(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let hh = household(c, &community, "1栋101").await;
    let cheng = c
        .add_resident(resident(
            &hh,
            "程桂兰",
            "1936-03-08",
            1,
            &[Tag::LivingAlone],
        ))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    let other = household(c, &community, "1栋102").await;
    c.add_resident(resident(&other, "李浩然", "1990-01-01", 2, &[]))
        .await
        .unwrap();
    let (_, ruan) = registered_cadre(c, &community, "阮晓峰").await;
    c.pair_household(as_role(
        pb::PairHouseholdRequest {
            idempotency_key: key(),
            household_id: hh.id.clone(),
            role: pb::PairingRole::Cadre as i32,
            cadre_id: ruan.id.clone(),
            ..Default::default()
        },
        "community_worker",
    ))
    .await
    .unwrap();

    let s = c
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.community.unwrap().name, "双泉社区");
    assert_eq!(
        (
            s.households,
            s.residents,
            s.vulnerable_households,
            s.intensive_care_households,
            s.cadres_registered,
            s.households_paired
        ),
        (2, 2, 1, 1, 1, 1)
    );
    assert_status(
        c.get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: hh.id.clone(),
        })
        .await,
        Code::NotFound,
        "community",
    );

    // Who did what: the pairing was made by the community worker, per the request metadata.
    let events = c
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: community.id.clone(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "household.create",
        "resident.add",
        "household.care",
        "registration.request",
        "registration.approve",
        "pairing.create",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let pairing_event = events
        .iter()
        .find(|e| e.action == "pairing.create")
        .unwrap();
    assert_eq!(pairing_event.actor, "test-community_worker");
    assert!(
        events
            .windows(2)
            .all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash)
    );
    // Personal data is masked in the trail.
    let added = events
        .iter()
        .find(|e| e.action == "resident.add" && e.entity_id == cheng.id)
        .unwrap();
    assert!(
        added.after_json.contains("138****0001") && !added.after_json.contains("13800000001"),
        "{}",
        added.after_json
    );
    let about_cheng = c
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: community.id.clone(),
            entity_id: cheng.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(about_cheng.events.len(), 1);
    let page = c
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: community.id.clone(),
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let next = c
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: community.id.clone(),
            page_size: 3,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.events[0].seq, page.events[2].seq + 1);
    let county = c
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(county.events.iter().any(|e| e.action == "unit.create"));

    let ok = c
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    assert!(ok.intact, "{ok:?}");
    assert_eq!(ok.checked, events.len() as i64);

    // Someone edits a record behind the service's back: the chain shows where.
    sqlx::query("UPDATE audit_events SET actor = 'nobody' WHERE community_id = $1 AND seq = 2")
        .bind(&community.id)
        .execute(&h.store.db.writer)
        .await
        .unwrap();
    let broken = c
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    assert!(!broken.intact);
    assert_eq!(broken.first_broken_seq, 2);
    // Deleting the last record is caught too.
    sqlx::query("UPDATE audit_events SET actor = $2 WHERE community_id = $1 AND seq = 2")
        .bind(&community.id)
        .bind(&events[1].actor)
        .execute(&h.store.db.writer)
        .await
        .unwrap();
    let last = events.last().unwrap().seq;
    sqlx::query("DELETE FROM audit_events WHERE community_id = $1 AND seq = $2")
        .bind(&community.id)
        .bind(last)
        .execute(&h.store.db.writer)
        .await
        .unwrap();
    let cut = c
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    assert!(!cut.intact);
    assert_eq!(cut.first_broken_seq, last);
    h.server.stop().await;
}

async fn concurrent_retries_make_one_record(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let (community, _, _) = places(&mut h.client).await;
    let req = pb::CreateHouseholdRequest {
        idempotency_key: key(),
        community_id: community.id.clone(),
        address: "1栋101".into(),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = h.client.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(
            async move { client.create_household(req).await },
        ));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                ids.insert(r.into_inner().household.unwrap().id);
            }
            // A retry racing the first write may be asked to retry again; it never makes a second record.
            Err(s) => assert_eq!(s.code(), Code::Aborted, "{s:?}"),
        }
    }
    assert_eq!(ids.len(), 1);
    let all = h
        .client
        .list_households(pb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.households.len(), 1);
    h.server.stop().await;
}

/// Text that would reach the database as garbage is refused at the edge, naming
/// the field, and nothing is written: NUL in a key or a username (PostgreSQL
/// rejects it as INTERNAL otherwise), invisible direction marks in a name.
async fn garbage_text_is_refused_at_the_edge(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let hh = household(c, &community, "八角亭小区1栋101").await;
    let nul_key = pb::CreateHouseholdRequest {
        idempotency_key: "key\0".into(),
        community_id: community.id.clone(),
        address: "八角亭小区1栋102".into(),
        ..Default::default()
    };
    assert_status(
        c.create_household(nul_key).await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    assert_status(
        c.verify_password(pb::VerifyPasswordRequest {
            username: "wu\0jing".into(),
            password: "whatever1".into(),
        })
        .await,
        Code::InvalidArgument,
        "username",
    );
    for name in ["程\u{202E}兰桂", "程\u{200B}桂兰", "程\0桂兰"] {
        assert_status(
            c.add_resident(pb::AddResidentRequest {
                name: name.into(),
                ..resident(&hh, "程桂兰", "1936-03-08", 1, &[])
            })
            .await,
            Code::InvalidArgument,
            "name",
        );
    }
    let listed = c
        .list_households(pb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .households;
    assert_eq!(listed.len(), 1, "nothing was written");
    assert_eq!(listed[0].member_count, 0);
    h.server.stop().await;
}

/// The elderly can be listed and are shown as such, whether or not anyone tagged
/// them: 程大娘 at 90 and two neighbours of 84 and 82, none tagged elderly by hand,
/// one tagged by hand though 79, and a 60-year-old who is not.
async fn the_elderly_are_listed_by_their_birth_dates(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let hh = household(c, &community, "八角亭小区1栋101").await;
    let today = chrono::Utc::now().date_naive();
    let born = |years: u32| {
        (today - chrono::Months::new(12 * years) - chrono::Days::new(1))
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut ids = std::collections::HashMap::new();
    for (i, (name, years, tags)) in [
        ("程桂兰", 90, vec![pb::VulnerabilityTag::LivingAlone]),
        ("刘奶奶", 84, vec![]),
        ("王爷爷", 82, vec![]),
        ("张大爷", 79, vec![pb::VulnerabilityTag::Elderly]),
        ("李阿姨", 60, vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c
            .add_resident(resident(&hh, name, &born(years), i as u32 + 1, &tags))
            .await
            .unwrap()
            .into_inner()
            .resident
            .unwrap();
        ids.insert(name, r);
    }
    let elderly = pb::VulnerabilityTag::Elderly as i32;
    assert!(ids["刘奶奶"].tags.contains(&elderly), "{:?}", ids["刘奶奶"]);
    assert!(!ids["李阿姨"].tags.contains(&elderly));
    let listed = c
        .list_residents(pb::ListResidentsRequest {
            community_id: community.id.clone(),
            tag: elderly,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .residents;
    let mut names: Vec<&str> = listed.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    let mut expected = vec!["程桂兰", "刘奶奶", "王爷爷", "张大爷"];
    expected.sort();
    assert_eq!(names, expected);
    assert!(listed.iter().all(|r| r.tags.contains(&elderly)));
}

/// Last week's duty, entered afterwards: the registration is approved as of ten
/// days ago; a check-in a week ago is taken and shows in last week's report; one
/// from before the registration is refused, saying why.
async fn past_duty_can_be_entered_after_a_backdated_registration(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let unit = c
        .create_unit(pb::CreateUnitRequest {
            idempotency_key: key(),
            name: "通山县纪委监委".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    let cadre = c
        .create_cadre(pb::CreateCadreRequest {
            idempotency_key: key(),
            unit_id: unit.id.clone(),
            name: "刘海元".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap();
    let reg = c
        .request_registration(pb::RequestRegistrationRequest {
            idempotency_key: key(),
            cadre_id: cadre.id.clone(),
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    let now = linli_core::time::now_micros();
    let days_ago = |d: i64| linli_core::time::to_timestamp(now - d * 86_400_000_000);
    for (when, why) in [(-1, "the future"), (400, "a year")] {
        let refused = c
            .approve_registration(pb::ApproveRegistrationRequest {
                registration_id: reg.id.clone(),
                expected_version: reg.version,
                active_from: Some(days_ago(when)),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{why}: {refused:?}");
        assert!(refused.message().starts_with("active_from"), "{refused:?}");
    }
    let active = c
        .approve_registration(pb::ApproveRegistrationRequest {
            registration_id: reg.id.clone(),
            expected_version: reg.version,
            active_from: Some(days_ago(10)),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    assert_eq!(active.activated_at, Some(days_ago(10)));
    let check_in = |at| pb::CheckInRequest {
        idempotency_key: key(),
        cadre_id: cadre.id.clone(),
        community_id: community.id.clone(),
        at: Some(at),
        activity: "卡点值守".into(),
    };
    c.check_in(check_in(days_ago(7))).await.unwrap();
    let early = c.check_in(check_in(days_ago(12))).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert!(
        early.message().contains("刘海元") && early.message().contains("not yet registered"),
        "{early:?}"
    );
    let report = c
        .get_attendance_report(pb::GetAttendanceReportRequest {
            community_id: community.id.clone(),
            week_of: Some(days_ago(7)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let row = report
        .cadres
        .iter()
        .find(|r| r.cadre_id == cadre.id)
        .expect("the cadre is in last week's report");
    assert_eq!((row.check_ins, row.days_present), (1, 1), "{row:?}");
}

linli_core::backend_tests!(
    past_duty_can_be_entered_after_a_backdated_registration,
    the_elderly_are_listed_by_their_birth_dates,
    garbage_text_is_refused_at_the_edge,
    places_and_households,
    residents_and_care,
    units_cadres_and_registration,
    pairings_and_coverage,
    duty_and_attendance,
    visits_and_compliance,
    accounts,
    summary_and_audit,
    concurrent_retries_make_one_record,
);
