//! Who a cadre's account may be made for: a cadre registered with the
//! account's community, once. Otherwise a worker could make an account for
//! another community's cadre and log in as him.
mod common;

use common::{Harness, key, place, places, registered_cadre};
use linli_proto::people::v1 as pb;
use tonic::Code;

fn cadre_account(
    username: &str,
    community: &pb::Place,
    cadre: &pb::Cadre,
) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        idempotency_key: key(),
        username: username.into(),
        password: "correct horse battery".into(),
        role: pb::AccountRole::Cadre as i32,
        community_id: community.id.clone(),
        cadre_id: cadre.id.clone(),
        resident_id: String::new(),
    }
}

async fn a_cadre_account_is_for_a_cadre_registered_here_once(
    backend: linli_core::testing::Backend,
) {
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (here, _, _) = places(c).await;
    let there = place(c, pb::PlaceKind::Community, &here.parent_id, "月亮山社区").await;
    let (_, ruan) = registered_cadre(c, &here, "阮晓峰").await;
    let (_, liu) = registered_cadre(c, &there, "刘海元").await;

    // Another community's cadre: refused, naming him.
    let refused = c
        .create_account(cadre_account("liuhy", &here, &liu))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("刘海元"), "{refused:?}");

    c.create_account(cadre_account("ruanxf", &here, &ruan))
        .await
        .unwrap();
    // A second account for the same cadre.
    let twice = c
        .create_account(cadre_account("ruan2", &here, &ruan))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists, "{twice:?}");
    assert!(
        twice.message().contains("阮晓峰") && twice.message().contains("ruanxf"),
        "{twice:?}"
    );
}

linli_core::backend_tests!(a_cadre_account_is_for_a_cadre_registered_here_once);

fn account(
    username: &str,
    role: pb::AccountRole,
    community: &pb::Place,
    resident: &str,
) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        idempotency_key: key(),
        username: username.into(),
        password: "correct horse battery".into(),
        role: role as i32,
        community_id: community.id.clone(),
        cadre_id: String::new(),
        resident_id: resident.into(),
    }
}

async fn verify(
    c: &mut common::Client,
    username: &str,
    password: &str,
) -> Result<pb::Account, tonic::Status> {
    c.verify_password(pb::VerifyPasswordRequest {
        username: username.into(),
        password: password.into(),
    })
    .await
    .map(|r| r.into_inner().account.unwrap())
}

/// What a worker does when a phone is lost or a password forgotten: stop the
/// account, start it again, set a new password the holder must change. Each
/// ends the account's logins (its epoch rises, the ending is listed for the
/// services) and leaves an audit record; none reaches past the worker's role
/// or community.
async fn a_worker_stops_starts_and_resets_accounts_in_reach(backend: linli_core::testing::Backend) {
    use linli_core::testing::{token, with_token};
    let mut h = Harness::start(backend).await;
    let c = &mut h.client;
    let (here, _, _) = places(c).await;
    let there = place(c, pb::PlaceKind::Community, &here.parent_id, "月亮山社区").await;
    let hh = common::household(c, &here, "双泉路1栋101").await;
    let res = c
        .add_resident(common::resident(&hh, "程桂兰", "1936-03-08", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    let chengs = c
        .create_account(account(
            "chenggl",
            pb::AccountRole::Resident,
            &here,
            &res.id,
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    let colleague = c
        .create_account(account(
            "wujing2",
            pb::AccountRole::CommunityWorker,
            &here,
            "",
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    let elsewhere = c
        .create_account(account(
            "liu-worker",
            pb::AccountRole::CommunityWorker,
            &there,
            "",
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    let worker = token(linli_core::Role::CommunityWorker, Some(&here.id));
    let disable = |id: &str, reason: &str| {
        with_token(
            pb::DisableAccountRequest {
                account_id: id.into(),
                reason: reason.into(),
            },
            &worker,
        )
    };

    // Bad input and out-of-reach accounts: refused, nothing changed.
    let no_reason = c
        .disable_account(disable(&chengs.id, " "))
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument, "{no_reason:?}");
    let peer = c
        .disable_account(disable(&colleague.id, "离职"))
        .await
        .unwrap_err();
    assert_eq!(peer.code(), Code::PermissionDenied, "{peer:?}");
    assert!(peer.message().contains("wujing2"), "{peer:?}");
    let far = c
        .disable_account(disable(&elsewhere.id, "离职"))
        .await
        .unwrap_err();
    assert_eq!(far.code(), Code::NotFound, "{far:?}");
    assert!(verify(c, "chenggl", "correct horse battery").await.is_ok());

    // Stopped: no login, her logins ended.
    let stopped = c
        .disable_account(disable(&chengs.id, "手机丢失"))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert!(stopped.disabled_at.is_some());
    assert_eq!(stopped.disabled_reason, "手机丢失");
    assert_eq!(stopped.session_epoch, 1);
    let refused = verify(c, "chenggl", "correct horse battery")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let ended = c
        .list_ended_sessions(pb::ListEndedSessionsRequest { since: None })
        .await
        .unwrap()
        .into_inner()
        .ended;
    assert!(
        ended
            .iter()
            .any(|e| e.account_id == chengs.id && e.session_epoch == 1 && e.session_id.is_empty()),
        "{ended:?}"
    );

    // Started again.
    let started = c
        .enable_account(with_token(
            pb::EnableAccountRequest {
                account_id: chengs.id.clone(),
            },
            &worker,
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert!(started.disabled_at.is_none() && started.disabled_reason.is_empty());
    assert!(verify(c, "chenggl", "correct horse battery").await.is_ok());

    // Reset: the new password works, the old does not, and she must change it.
    let short = c
        .reset_password(with_token(
            pb::ResetPasswordRequest {
                account_id: chengs.id.clone(),
                new_password: "1234".into(),
            },
            &worker,
        ))
        .await
        .unwrap_err();
    assert_eq!(short.code(), Code::InvalidArgument, "{short:?}");
    let reset = c
        .reset_password(with_token(
            pb::ResetPasswordRequest {
                account_id: chengs.id.clone(),
                new_password: "temporary-2026".into(),
            },
            &worker,
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert!(reset.must_change_password);
    assert_eq!(reset.session_epoch, 2);
    assert!(verify(c, "chenggl", "correct horse battery").await.is_err());
    assert!(
        verify(c, "chenggl", "temporary-2026")
            .await
            .unwrap()
            .must_change_password
    );

    // She changes it (through the gateway, which calls as a county service).
    let change = |current: &str, new: &str| pb::ChangePasswordRequest {
        account_id: chengs.id.clone(),
        current_password: current.into(),
        new_password: new.into(),
    };
    let wrong = c
        .change_password(change("guess-guess", "mine-only-2026"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let as_worker = c
        .change_password(with_token(
            change("temporary-2026", "mine-only-2026"),
            &worker,
        ))
        .await
        .unwrap_err();
    assert_eq!(as_worker.code(), Code::PermissionDenied, "{as_worker:?}");
    let changed = c
        .change_password(change("temporary-2026", "mine-only-2026"))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert!(!changed.must_change_password);
    assert_eq!(changed.session_epoch, 3);
    assert!(verify(c, "chenggl", "mine-only-2026").await.is_ok());

    // Every step is on the county chain, and no password or hash is.
    let trail = c
        .list_audit_events(pb::ListAuditEventsRequest {
            entity_id: chengs.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = trail.events.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "account.disable",
        "account.enable",
        "account.reset_password",
        "account.change_password",
        "account.end_sessions",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let text = format!("{trail:?}");
    assert!(
        !text.contains("temporary-2026") && !text.contains("argon2"),
        "{text}"
    );
}

linli_core::backend_tests!(a_worker_stops_starts_and_resets_accounts_in_reach);
