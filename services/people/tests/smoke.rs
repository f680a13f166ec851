mod common;

use common::*;
use linli_core::testing::Backend;
use linli_proto::people::v1 as pb;

async fn creates_a_household(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let (community, _, _) = places(&mut h.client).await;
    let hh = household(&mut h.client, &community, "八角亭小区3栋2单元402").await;
    let r = h
        .client
        .add_resident(resident(
            &hh,
            "程秀英",
            "1936-03-08",
            1,
            &[pb::VulnerabilityTag::LivingAlone],
        ))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    assert_eq!(r.phone, "138****0001");
    let got = h
        .client
        .get_household(pb::GetHouseholdRequest {
            household_id: hh.id.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.household.unwrap().care_level,
        pb::CareLevel::Intensive as i32
    );
    h.server.stop().await;
}

linli_core::backend_tests!(creates_a_household);
