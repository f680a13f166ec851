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
