//! Who may do what, over the wire: every RPC × every role × a record of the
//! caller's own community and one of another, judged against `policy.rs`; no
//! id of the other community in any answer; and forged identities refused.
mod common;

use common::*;
use linli_core::testing::matrix::{Side, callers, forgeries, walk};
use linli_core::testing::{Backend, TestDb, TestServer, with_token};
use linli_proto::people::v1 as pb;
use tonic::Code;

/// The records of one community, made by an admin.
struct Community {
    community: String,
    compound: String,
    household: String,
    resident: String,
    unit: String,
    cadre: String,
    registration: String,
    pairing: String,
    account: String,
    username: String,
    /// The resident's account, which a worker may stop and start.
    resident_account: String,
}

impl Community {
    async fn make(c: &mut Client, town: &str, name: &str) -> Community {
        let community = place(c, pb::PlaceKind::Community, town, name).await;
        let compound = place(c, pb::PlaceKind::Compound, &community.id, "一号院").await;
        let hh = household(c, &community, &format!("{name}1栋101")).await;
        let res = c
            .add_resident(resident(&hh, "程桂兰", "1936-03-08", 1, &[]))
            .await
            .unwrap()
            .into_inner()
            .resident
            .unwrap();
        let (unit, cadre) = registered_cadre(c, &community, &format!("{name}干部")).await;
        let registration = c
            .get_cadre(pb::GetCadreRequest {
                cadre_id: cadre.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .registration
            .unwrap();
        let pairing = c
            .pair_household(pb::PairHouseholdRequest {
                idempotency_key: key(),
                household_id: hh.id.clone(),
                role: pb::PairingRole::Cadre as i32,
                cadre_id: cadre.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .pairing
            .unwrap();
        let username = format!("worker-{}", &key()[24..]);
        let account = c
            .create_account(pb::CreateAccountRequest {
                idempotency_key: key(),
                username: username.clone(),
                password: "correct horse".into(),
                role: pb::AccountRole::CommunityWorker as i32,
                community_id: community.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        let resident_account = c
            .create_account(pb::CreateAccountRequest {
                idempotency_key: key(),
                username: format!("r-{}", &key()[24..]),
                password: "correct horse".into(),
                role: pb::AccountRole::Resident as i32,
                community_id: community.id.clone(),
                resident_id: res.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap()
            .id;
        Community {
            resident_account,
            community: community.id,
            compound: compound.id,
            household: hh.id,
            resident: res.id,
            unit: unit.id,
            cadre: cadre.id,
            registration: registration.id,
            pairing: pairing.id,
            account: account.id,
            username,
        }
    }

    /// Ids that must never reach a caller of another community.
    fn ids(&self) -> Vec<String> {
        vec![
            self.community.clone(),
            self.compound.clone(),
            self.household.clone(),
            self.resident.clone(),
            self.registration.clone(),
            self.pairing.clone(),
            self.account.clone(),
            self.resident_account.clone(),
        ]
    }
}

/// Calls `rpc` on the records of `s` with `token`; the answer as text, to search for ids.
async fn call(
    c: &mut Client,
    rpc: &str,
    s: &Community,
    token: &str,
) -> Result<String, tonic::Status> {
    macro_rules! send {
        ($method:ident, $msg:expr) => {
            c.$method(with_token($msg, token))
                .await
                .map(|r| format!("{:?}", r.into_inner()))
        };
    }
    let community = || s.community.clone();
    match rpc {
        "CreatePlace" => send!(
            create_place,
            pb::CreatePlaceRequest {
                idempotency_key: key(),
                kind: pb::PlaceKind::Building as i32,
                parent_id: s.compound.clone(),
                name: "9栋".into(),
                code: String::new(),
            }
        ),
        "GetPlace" => send!(
            get_place,
            pb::GetPlaceRequest {
                place_id: s.compound.clone()
            }
        ),
        "ListPlaces" => send!(
            list_places,
            pb::ListPlacesRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "CreateHousehold" => send!(
            create_household,
            pb::CreateHouseholdRequest {
                idempotency_key: key(),
                community_id: community(),
                address: "2栋202".into(),
                ..Default::default()
            }
        ),
        "GetHousehold" => send!(
            get_household,
            pb::GetHouseholdRequest {
                household_id: s.household.clone(),
                view: 0,
            }
        ),
        "ListHouseholds" => send!(
            list_households,
            pb::ListHouseholdsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "AddResident" => send!(
            add_resident,
            pb::AddResidentRequest {
                household_id: s.household.clone(),
                ..resident(
                    &pb::Household {
                        id: s.household.clone(),
                        ..Default::default()
                    },
                    "王建国",
                    "1950-05-05",
                    7,
                    &[],
                )
            }
        ),
        "GetResident" => send!(
            get_resident,
            pb::GetResidentRequest {
                resident_id: s.resident.clone(),
                view: 0,
            }
        ),
        "ListResidents" => send!(
            list_residents,
            pb::ListResidentsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        // Stale versions: authorization is exercised, nothing is changed.
        "UpdateResident" => send!(
            update_resident,
            pb::UpdateResidentRequest {
                resident_id: s.resident.clone(),
                expected_version: 999,
                phone: Some("13912345678".into()),
                ..Default::default()
            }
        ),
        "RemoveResident" => send!(
            remove_resident,
            pb::RemoveResidentRequest {
                resident_id: s.resident.clone(),
                expected_version: 999,
                reason: "moved away".into(),
            }
        ),
        "CreateUnit" => send!(
            create_unit,
            pb::CreateUnitRequest {
                idempotency_key: key(),
                name: "县民政局".into(),
            }
        ),
        "GetUnit" => send!(
            get_unit,
            pb::GetUnitRequest {
                unit_id: s.unit.clone()
            }
        ),
        "ListUnits" => send!(list_units, pb::ListUnitsRequest::default()),
        "CreateCadre" => send!(
            create_cadre,
            pb::CreateCadreRequest {
                idempotency_key: key(),
                unit_id: s.unit.clone(),
                name: "新干部".into(),
                phone: "13900000009".into(),
                title: "科员".into(),
            }
        ),
        "GetCadre" => send!(
            get_cadre,
            pb::GetCadreRequest {
                cadre_id: s.cadre.clone()
            }
        ),
        "ListCadres" => send!(
            list_cadres,
            pb::ListCadresRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "RequestRegistration" => send!(
            request_registration,
            pb::RequestRegistrationRequest {
                idempotency_key: key(),
                cadre_id: s.cadre.clone(),
                community_id: community(),
            }
        ),
        "ApproveRegistration" => send!(
            approve_registration,
            pb::ApproveRegistrationRequest {
                registration_id: s.registration.clone(),
                expected_version: 999,
                active_from: None,
            }
        ),
        "EndRegistration" => send!(
            end_registration,
            pb::EndRegistrationRequest {
                registration_id: s.registration.clone(),
                expected_version: 999,
                reason: "任务结束".into(),
            }
        ),
        "ListRegistrations" => send!(
            list_registrations,
            pb::ListRegistrationsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "CheckRegistration" => send!(
            check_registration,
            pb::CheckRegistrationRequest {
                cadre_id: s.cadre.clone(),
                community_id: community(),
            }
        ),
        "PairHousehold" => send!(
            pair_household,
            pb::PairHouseholdRequest {
                idempotency_key: key(),
                household_id: s.household.clone(),
                role: pb::PairingRole::MedicalWorker as i32,
                member_name: "吴医生".into(),
                member_phone: "13700000001".into(),
                ..Default::default()
            }
        ),
        // Ending a pairing twice is refused as a state error, so it may run for every role.
        "EndPairing" => send!(
            end_pairing,
            pb::EndPairingRequest {
                pairing_id: s.pairing.clone(),
                reason: "调整".into(),
            }
        ),
        "ListPairings" => send!(
            list_pairings,
            pb::ListPairingsRequest {
                community_id: community(),
                include_ended: true,
                ..Default::default()
            }
        ),
        "GetCoverageReport" => send!(
            get_coverage_report,
            pb::GetCoverageReportRequest {
                community_id: community(),
            }
        ),
        "CheckIn" => send!(
            check_in,
            pb::CheckInRequest {
                idempotency_key: key(),
                cadre_id: s.cadre.clone(),
                community_id: community(),
                at: None,
                activity: "值守".into(),
            }
        ),
        "ListCheckIns" => send!(
            list_check_ins,
            pb::ListCheckInsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "GetAttendanceReport" => send!(
            get_attendance_report,
            pb::GetAttendanceReportRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "LogVisit" => send!(
            log_visit,
            pb::LogVisitRequest {
                idempotency_key: key(),
                household_id: s.household.clone(),
                cadre_id: s.cadre.clone(),
                at: None,
                kind: pb::VisitKind::HomeVisit as i32,
                outcome: pb::VisitOutcome::Ok as i32,
                note: String::new(),
            }
        ),
        "ListVisits" => send!(
            list_visits,
            pb::ListVisitsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "GetComplianceReport" => send!(
            get_compliance_report,
            pb::GetComplianceReportRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "CreateAccount" => send!(
            create_account,
            pb::CreateAccountRequest {
                idempotency_key: key(),
                username: format!("r-{}", &key()[24..]),
                password: "correct horse".into(),
                role: pb::AccountRole::Resident as i32,
                community_id: community(),
                resident_id: s.resident.clone(),
                ..Default::default()
            }
        ),
        "GetAccount" => send!(
            get_account,
            pb::GetAccountRequest {
                account_id: s.account.clone()
            }
        ),
        "ListAccounts" => send!(
            list_accounts,
            pb::ListAccountsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "VerifyPassword" => send!(
            verify_password,
            pb::VerifyPasswordRequest {
                username: s.username.clone(),
                password: "correct horse".into(),
            }
        ),
        // Without a reason: past authorization, nothing changed.
        "DisableAccount" => send!(
            disable_account,
            pb::DisableAccountRequest {
                account_id: s.resident_account.clone(),
                reason: String::new(),
            }
        ),
        "EnableAccount" => send!(
            enable_account,
            pb::EnableAccountRequest {
                account_id: s.resident_account.clone(),
            }
        ),
        // A new password the same as the current one: refused after authorization.
        "ChangePassword" => send!(
            change_password,
            pb::ChangePasswordRequest {
                account_id: s.account.clone(),
                current_password: "correct horse".into(),
                new_password: "correct horse".into(),
            }
        ),
        // Too short: refused after authorization, nothing changed.
        "ResetPassword" => send!(
            reset_password,
            pb::ResetPasswordRequest {
                account_id: s.resident_account.clone(),
                new_password: "short".into(),
            }
        ),
        "EndSession" => send!(
            end_session,
            pb::EndSessionRequest {
                account_id: s.account.clone(),
                session_id: key(),
            }
        ),
        "ListEndedSessions" => send!(
            list_ended_sessions,
            pb::ListEndedSessionsRequest { since: None }
        ),
        "GetCommunitySummary" => send!(
            get_community_summary,
            pb::GetCommunitySummaryRequest {
                community_id: community(),
            }
        ),
        "ListAuditEvents" => send!(
            list_audit_events,
            pb::ListAuditEventsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "VerifyAuditTrail" => send!(
            verify_audit_trail,
            pb::VerifyAuditTrailRequest {
                community_id: community(),
            }
        ),
        other => panic!("the matrix has no call for {other}: add one"),
    }
}

async fn every_rpc_every_role_both_communities(backend: Backend) {
    matrix(backend, false).await;
}

/// The same matrix through the gateway: it forwards the caller's token, and
/// the service's answers reach the caller unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_every_role_through_the_gateway() {
    matrix(Backend::Sqlite, true).await;
}

async fn matrix(backend: Backend, via_gateway: bool) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let county = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: pb::PlaceKind::County as i32,
            name: "通山县".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap();
    let town = c
        .create_place(pb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: pb::PlaceKind::Town as i32,
            parent_id: county.id,
            name: "通羊镇".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap();
    let own = Community::make(c, &town.id, "双泉社区").await;
    let other = Community::make(c, &town.id, "月亮山社区").await;
    let foreign = other.ids();

    let callers = callers(&own.community, &own.cadre, &own.household);
    let gateway_db = TestDb::new(Backend::Sqlite).await;
    let gateway = match via_gateway {
        true => Some(
            TestServer::spawn(
                linli_gateway::Application::in_front_of(
                    &gateway_db.url,
                    &format!("http://{}", h.server.addr),
                    "http://127.0.0.1:9",
                    "http://127.0.0.1:9",
                    linli_core::testing::keys().clone(),
                )
                .await
                .unwrap()
                .grpc_server(),
            )
            .await,
        ),
        false => None,
    };
    let mut through = gateway
        .as_ref()
        .map(|g| PeopleServiceClient::new(linli_core::testing::authed(g.channel.clone())));
    let tally = walk(
        &linli_people::policy::POLICY,
        &callers,
        &foreign,
        async |rpc, side, token| {
            let target = if side == Side::Own { &own } else { &other };
            call(through.as_mut().unwrap_or(c), rpc, target, token).await
        },
    )
    .await;
    tally.assert_clean();
    h.server.stop().await;
}

/// Forged identities, over the wire: each is UNAUTHENTICATED; a genuine token passes.
async fn forged_identities_are_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut bare = PeopleServiceClient::new(h.server.channel.clone());
    for (what, req) in forgeries(pb::ListUnitsRequest::default()) {
        let status = bare.list_units(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    bare.list_units(with_token(
        pb::ListUnitsRequest::default(),
        &linli_core::testing::admin_token(),
    ))
    .await
    .expect("a genuine token passes");
    h.server.stop().await;
}

use linli_proto::people::v1::people_service_client::PeopleServiceClient;

/// Carers' and cadres' phone numbers are personal data too: masked for roles that
/// do not need them, in full for those that do.
async fn carers_phone_numbers_are_masked(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (community, _, _) = places(c).await;
    let hh = household(c, &community, "八角亭小区1栋101").await;
    let (_, cadre) = registered_cadre(c, &community, "阮晓峰").await;
    c.pair_household(pb::PairHouseholdRequest {
        idempotency_key: key(),
        household_id: hh.id.clone(),
        role: pb::PairingRole::MedicalWorker as i32,
        member_name: "吴医生".into(),
        member_phone: "13700000001".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let token = |role| linli_core::testing::token(role, Some(&community.id));
    let phones = async |c: &mut Client, role| {
        let t = token(role);
        let pairings = c
            .list_pairings(with_token(
                pb::ListPairingsRequest {
                    community_id: community.id.clone(),
                    ..Default::default()
                },
                &t,
            ))
            .await
            .unwrap()
            .into_inner()
            .pairings;
        let cadre = c
            .get_cadre(with_token(
                pb::GetCadreRequest {
                    cadre_id: cadre.id.clone(),
                },
                &t,
            ))
            .await
            .unwrap()
            .into_inner()
            .cadre
            .unwrap();
        (pairings[0].member_phone.clone(), cadre.phone)
    };
    assert_eq!(
        phones(c, linli_core::Role::Cadre).await,
        ("137****0001".to_owned(), "139****0000".to_owned())
    );
    assert_eq!(
        phones(c, linli_core::Role::Supervisor).await,
        ("137****0001".to_owned(), "139****0000".to_owned())
    );
    assert_eq!(
        phones(c, linli_core::Role::CommunityWorker).await,
        ("13700000001".to_owned(), "13900000000".to_owned())
    );
    // The household itself sees its own carers' numbers whole, to call them.
    let resident = |household: &str| {
        linli_core::testing::sign(
            &linli_core::auth::Claims::new(
                "account:resident",
                linli_core::Role::Resident,
                std::time::Duration::from_secs(600),
            )
            .community(&community.id)
            .household(household),
        )
    };
    let own = c
        .get_household(with_token(
            pb::GetHouseholdRequest {
                household_id: hh.id.clone(),
                ..Default::default()
            },
            &resident(&hh.id),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.pairings[0].member_phone, "13700000001");
    let next_door = household(c, &community, "八角亭小区1栋102").await;
    let theirs = c
        .get_household(with_token(
            pb::GetHouseholdRequest {
                household_id: hh.id.clone(),
                ..Default::default()
            },
            &resident(&next_door.id),
        ))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound, "another household's carers");
    h.server.stop().await;
}

linli_core::backend_tests!(carers_phone_numbers_are_masked);
linli_core::backend_tests!(
    every_rpc_every_role_both_communities,
    forged_identities_are_refused
);
