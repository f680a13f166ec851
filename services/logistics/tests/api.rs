//! Every RPC of the logistics service over real sockets, with a real people
//! service behind it, on SQLite and on PostgreSQL.
mod common;

use common::*;
use linli_core::testing::Backend;
use linli_proto::logistics::v1 as pb;
use tonic::Code;

fn lines(item: &str, quantity: i64) -> Vec<pb::ItemQuantity> {
    vec![pb::ItemQuantity {
        item_id: item.into(),
        quantity,
    }]
}

async fn stock_never_goes_below_zero(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let req = pb::CreateItemRequest {
        idempotency_key: key(),
        name: "鸡蛋".into(),
        unit_of_measure: "个".into(),
        perishable: true,
    };
    let eggs = h
        .client
        .create_item(req.clone())
        .await
        .unwrap()
        .into_inner()
        .item
        .unwrap();
    assert_eq!(
        h.client
            .create_item(req)
            .await
            .unwrap()
            .into_inner()
            .item
            .unwrap(),
        eggs,
        "idempotent"
    );
    assert_status(
        h.client
            .create_item(pb::CreateItemRequest {
                idempotency_key: key(),
                name: "鸡蛋".into(),
                unit_of_measure: "个".into(),
                perishable: true,
            })
            .await,
        Code::AlreadyExists,
        "",
    );
    assert_status(
        h.client
            .create_item(pb::CreateItemRequest {
                idempotency_key: key(),
                name: " ".into(),
                unit_of_measure: "个".into(),
                perishable: true,
            })
            .await,
        Code::InvalidArgument,
        "name",
    );
    assert_status(
        h.client
            .create_depot(pb::CreateDepotRequest {
                idempotency_key: key(),
                community_id: linli_core::new_id(),
                name: "x".into(),
                address: String::new(),
            })
            .await,
        Code::NotFound,
        "community",
    );
    let depot = h.depot().await;
    let listed = h
        .client
        .list_depots(pb::ListDepotsRequest {
            community_id: h.world.community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .depots;
    assert_eq!(listed.len(), 1);

    let donation = pb::RecordStockMovementRequest {
        idempotency_key: key(),
        depot_id: depot.clone(),
        item_id: eggs.id.clone(),
        kind: pb::MovementKind::DonationIn as i32,
        quantity: 100,
        reference: "爱心捐赠".into(),
        ..Default::default()
    };
    let first = h
        .client
        .record_stock_movement(donation.clone())
        .await
        .unwrap()
        .into_inner();
    let again = h
        .client
        .record_stock_movement(donation.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.balance, again.balance, again.movement),
        (100, 100, first.movement),
        "a retried donation counts once"
    );
    let movement =
        |kind: pb::MovementKind, quantity: i64, reason: &str| pb::RecordStockMovementRequest {
            idempotency_key: key(),
            kind: kind as i32,
            quantity,
            reason: reason.into(),
            ..donation.clone()
        };
    // Extremes are the caller's error, and leave the stock as it was.
    for (kind, quantity, reason) in [
        (pb::MovementKind::DonationIn, i64::MAX, ""),
        (pb::MovementKind::Adjustment, i64::MIN, "盘点"),
        (pb::MovementKind::Adjustment, i64::MAX, "盘点"),
    ] {
        assert_status(
            h.client
                .record_stock_movement(movement(kind, quantity, reason))
                .await,
            Code::InvalidArgument,
            "quantity",
        );
    }
    // A second donation, then the first retried: it answers with its own balance, not today's.
    let second = h
        .client
        .record_stock_movement(movement(pb::MovementKind::DonationIn, 20, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.balance, 120);
    let replayed = h
        .client
        .record_stock_movement(donation.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.balance, 100, "a replay answers as the first time");
    h.client
        .record_stock_movement(movement(pb::MovementKind::Adjustment, -20, "盘点"))
        .await
        .unwrap();
    assert_status(
        h.client
            .record_stock_movement(movement(pb::MovementKind::Adjustment, -5, ""))
            .await,
        Code::InvalidArgument,
        "reason",
    );
    assert_status(
        h.client
            .record_stock_movement(movement(pb::MovementKind::PurchaseIn, -5, ""))
            .await,
        Code::InvalidArgument,
        "quantity",
    );
    assert_status(
        h.client
            .record_stock_movement(movement(pb::MovementKind::AllocationOut, 5, ""))
            .await,
        Code::InvalidArgument,
        "kind",
    );
    assert_status(
        h.client
            .record_stock_movement(movement(pb::MovementKind::Adjustment, -500, "盘点"))
            .await,
        Code::FailedPrecondition,
        "not enough",
    );
    assert_status(
        h.client
            .record_stock_movement(pb::RecordStockMovementRequest {
                item_id: linli_core::new_id(),
                ..movement(pb::MovementKind::DonationIn, 5, "")
            })
            .await,
        Code::NotFound,
        "item",
    );
    let spoiled = h
        .client
        .record_stock_movement(movement(pb::MovementKind::Adjustment, -4, "破损"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spoiled.balance, 96);
    h.client
        .record_stock_movement(movement(pb::MovementKind::Adjustment, 4, "盘点找回"))
        .await
        .unwrap();

    // Twenty requests at once, across two replicas, each for 10 of the 100 eggs: ten win.
    let (replica, replica_client) = h.replica().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = if i % 2 == 0 {
            h.client.clone()
        } else {
            replica_client.clone()
        };
        let req = pb::AllocateStockRequest {
            idempotency_key: key(),
            depot_id: depot.clone(),
            item_id: eggs.id.clone(),
            quantity: 10,
            reference: format!("户{i}"),
        };
        tasks.push(tokio::spawn(
            async move { client.allocate_stock(req).await },
        ));
    }
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert!(r.into_inner().balance >= 0);
                won += 1;
            }
            Err(s) => {
                assert!(
                    matches!(s.code(), Code::FailedPrecondition | Code::Aborted),
                    "{s:?}"
                );
                lost += 1;
            }
        }
    }
    assert_eq!(h.level(&depot, &eggs.id).await, 100 - 10 * won);
    assert_eq!(won, 10, "exactly the stock there was ({lost} refused)");
    assert_eq!(
        h.store.ledger_sum(&depot, &eggs.id).await.unwrap(),
        0,
        "the level is the ledger's sum"
    );
    assert_status(
        h.client
            .allocate_stock(pb::AllocateStockRequest {
                idempotency_key: key(),
                depot_id: depot.clone(),
                item_id: eggs.id.clone(),
                quantity: 1,
                reference: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "not enough",
    );
    let moves = h
        .client
        .list_stock_movements(pb::ListStockMovementsRequest {
            depot_id: depot.clone(),
            item_id: eggs.id.clone(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .movements;
    assert_eq!(
        moves.len(),
        3 + 2 + 10,
        "three before, the donation and count of the replay check, ten after"
    );
    assert_eq!(moves.iter().map(|m| m.quantity).sum::<i64>(), 0);
    replica.stop().await;
    h.stop().await;
}

async fn batches_go_to_the_vulnerable_first(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let (community, households, cadres, stranger) = (
        w.community.clone(),
        w.households.clone(),
        w.cadres.clone(),
        w.stranger.clone(),
    );
    let eggs = h.item("鸡蛋", "个").await;
    let veg = h.item("青菜", "斤").await;
    let depot = h.depot().await;
    h.stock_in(&depot, &eggs, 30).await;
    h.stock_in(&depot, &veg, 12).await;
    let plan = |name: &str, bundle: Vec<pb::ItemQuantity>, recipients: pb::Recipients| {
        pb::PlanBatchRequest {
            idempotency_key: key(),
            community_id: community.clone(),
            depot_id: depot.clone(),
            name: name.into(),
            bundle,
            recipients: Some(recipients),
        }
    };
    let all = pb::Recipients {
        all: true,
        ..Default::default()
    };
    let mut bundle = lines(&eggs, 4);
    bundle.extend(lines(&veg, 2));
    // Seven households' worth of vegetables is more than the 12 jin there are: nothing is reserved.
    let too_big = plan(
        "第一批",
        vec![pb::ItemQuantity {
            item_id: veg.clone(),
            quantity: 3,
        }],
        all.clone(),
    );
    assert_status(
        h.client.plan_batch(too_big).await,
        Code::FailedPrecondition,
        "not enough",
    );
    assert_eq!(h.level(&depot, &veg).await, 12);
    assert_status(
        h.client
            .plan_batch(plan(
                "x",
                bundle.clone(),
                pb::Recipients {
                    all: true,
                    min_care_level: 3,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "recipients",
    );
    assert_status(
        h.client.plan_batch(plan("x", vec![], all.clone())).await,
        Code::InvalidArgument,
        "bundle",
    );
    assert_status(
        h.client
            .plan_batch(plan("x", lines(&eggs, 0), all.clone()))
            .await,
        Code::InvalidArgument,
        "bundle[0].quantity",
    );
    assert_status(
        h.client
            .plan_batch(plan(
                "x",
                bundle.clone(),
                pb::Recipients {
                    household_ids: vec![households[0].clone(), households[0].clone()],
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "recipients.household_ids[1]",
    );

    let req = plan("第一批", bundle.clone(), all.clone());
    let batch = h
        .client
        .plan_batch(req.clone())
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();
    assert_eq!(
        h.client
            .plan_batch(req)
            .await
            .unwrap()
            .into_inner()
            .batch
            .unwrap(),
        batch,
        "idempotent"
    );
    assert_eq!(batch.households, 5);
    assert_eq!(
        (h.level(&depot, &eggs).await, h.level(&depot, &veg).await),
        (10, 2)
    );
    let deliveries = h
        .client
        .list_deliveries(pb::ListDeliveriesRequest {
            batch_id: batch.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(
        deliveries[0].household_id, households[0],
        "程大娘 first: intensive care"
    );
    assert_eq!(deliveries[1].household_id, households[1]);
    assert!(
        deliveries[0].care_level > deliveries[1].care_level
            && deliveries[1].care_level > deliveries[2].care_level
    );

    let vulnerable = h
        .client
        .plan_batch(plan(
            "独居老人",
            lines(&eggs, 2),
            pb::Recipients {
                min_care_level: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();
    assert_eq!(vulnerable.households, 2);
    let chosen = h
        .client
        .plan_batch(plan(
            "指定",
            lines(&eggs, 1),
            pb::Recipients {
                household_ids: vec![households[4].clone()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();
    assert_eq!(chosen.households, 1);
    assert_eq!(h.level(&depot, &eggs).await, 5);

    // Deliveries go to registered cadres; the most vulnerable are handed out first.
    let assign = |cadre: &str, ids: Vec<String>, count: i32| pb::AssignDeliveriesRequest {
        batch_id: batch.id.clone(),
        cadre_id: cadre.into(),
        delivery_ids: ids,
        count,
    };
    assert_status(
        h.client
            .assign_deliveries(assign(&stranger, vec![], 2))
            .await,
        Code::FailedPrecondition,
        "not actively registered",
    );
    assert_status(
        h.client
            .assign_deliveries(assign(&cadres[1], vec![], 0))
            .await,
        Code::InvalidArgument,
        "count",
    );
    let mine = h
        .client
        .assign_deliveries(assign(&cadres[1], vec![], 2))
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(
        mine.iter()
            .map(|d| d.household_id.as_str())
            .collect::<Vec<_>>(),
        vec![households[0].as_str(), households[1].as_str()]
    );
    let rest: Vec<String> = deliveries[2..].iter().map(|d| d.id.clone()).collect();
    h.client
        .assign_deliveries(assign(&cadres[2], rest, 0))
        .await
        .unwrap();

    let outcome =
        |d: &pb::Delivery, o: pb::DeliveryOutcome, by: &str| pb::RecordDeliveryOutcomeRequest {
            delivery_id: d.id.clone(),
            expected_version: d.version,
            outcome: o as i32,
            confirmed_by: by.into(),
            note: String::new(),
            at: None,
        };
    let d0 = &mine[0];
    assert_status(
        h.client
            .record_delivery_outcome(outcome(d0, pb::DeliveryOutcome::Delivered, ""))
            .await,
        Code::InvalidArgument,
        "confirmed_by",
    );
    // Nobody answers twice (she is hard of hearing), then the third knock works.
    let d = h
        .client
        .record_delivery_outcome(outcome(d0, pb::DeliveryOutcome::NotHome, ""))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_status(
        h.client
            .record_delivery_outcome(outcome(d0, pb::DeliveryOutcome::NotHome, ""))
            .await,
        Code::Aborted,
        "",
    );
    let d = h
        .client
        .record_delivery_outcome(outcome(&d, pb::DeliveryOutcome::NotHome, ""))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    let d = h
        .client
        .record_delivery_outcome(outcome(&d, pb::DeliveryOutcome::Delivered, "程桂兰"))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(
        (d.status, d.attempts, d.confirmed_by.as_str()),
        (pb::DeliveryStatus::Delivered as i32, 3, "程桂兰")
    );
    assert_status(
        h.client
            .record_delivery_outcome(outcome(&d, pb::DeliveryOutcome::Delivered, "x"))
            .await,
        Code::FailedPrecondition,
        "delivered",
    );
    // A refusal and three empty knocks send the goods back to the depot.
    let d1 = h
        .client
        .record_delivery_outcome(outcome(&mine[1], pb::DeliveryOutcome::Refused, ""))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(d1.status, pb::DeliveryStatus::Refused as i32);
    let mut d2 = deliveries[2].clone();
    d2.version += 1; // assigned since it was listed
    for _ in 0..3 {
        d2 = h
            .client
            .record_delivery_outcome(outcome(&d2, pb::DeliveryOutcome::NotHome, ""))
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap();
    }
    assert_eq!(d2.status, pb::DeliveryStatus::Failed as i32);
    assert_eq!(
        (h.level(&depot, &eggs).await, h.level(&depot, &veg).await),
        (5 + 8, 2 + 4)
    );

    let p = h
        .client
        .get_batch_progress(pb::GetBatchProgressRequest {
            batch_id: batch.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (p.delivered, p.refused, p.failed, p.pending, p.unassigned),
        (1, 1, 1, 2, 0)
    );
    let pending = h
        .client
        .list_deliveries(pb::ListDeliveriesRequest {
            batch_id: batch.id.clone(),
            status: pb::DeliveryStatus::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(pending.len(), 2);
    let batches = h
        .client
        .list_batches(pb::ListBatchesRequest {
            community_id: community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .batches;
    assert_eq!(batches.len(), 3);

    // A batch made just before people goes down...
    let retry = plan("复查", lines(&eggs, 1), all.clone());
    let made = h
        .client
        .plan_batch(retry.clone())
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();

    // With people down, a batch fails UNAVAILABLE and reserves nothing.
    h.people_server.take().unwrap().stop().await;
    // ...is still answered to a retry, from the database alone.
    let replayed = h
        .client
        .plan_batch(retry)
        .await
        .expect("a retry is answered without people")
        .into_inner()
        .batch
        .unwrap();
    assert_eq!(replayed.id, made.id);
    let before = h.level(&depot, &eggs).await;
    assert_status(
        h.client
            .plan_batch(plan("停电了", lines(&eggs, 1), all))
            .await,
        Code::Unavailable,
        "people service",
    );
    assert_eq!(h.level(&depot, &eggs).await, before);
    h.server.stop().await;
}

async fn a_group_purchase_from_open_to_delivered(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let (community, households, cadre) = (
        w.community.clone(),
        w.households.clone(),
        w.cadres[1].clone(),
    );
    let veg = h.item("青菜", "斤").await;
    let fruit = h.item("水果", "斤").await;
    let masks = h.item("口罩", "个").await;
    let depot = h.depot().await;
    let closes = linli_core::time::now_micros() / 1_000_000 + HOUR;
    let open = pb::OpenGroupPurchaseRequest {
        idempotency_key: key(),
        community_id: community.clone(),
        title: "蔬菜水果团购".into(),
        organiser: "阮晓峰".into(),
        items: vec![
            pb::GroupPurchaseItem {
                item_id: veg.clone(),
                unit_price_fen: 350,
            },
            pb::GroupPurchaseItem {
                item_id: fruit.clone(),
                unit_price_fen: 800,
            },
        ],
        closes_at: Some(at(closes)),
    };
    assert_status(
        h.client
            .open_group_purchase(pb::OpenGroupPurchaseRequest {
                idempotency_key: key(),
                closes_at: Some(at(closes - 2 * HOUR)),
                ..open.clone()
            })
            .await,
        Code::InvalidArgument,
        "closes_at",
    );
    assert_status(
        h.client
            .open_group_purchase(pb::OpenGroupPurchaseRequest {
                idempotency_key: key(),
                items: vec![],
                ..open.clone()
            })
            .await,
        Code::InvalidArgument,
        "items",
    );
    let purchase = h
        .client
        .open_group_purchase(open)
        .await
        .unwrap()
        .into_inner()
        .purchase
        .unwrap();
    let order = |household: &str, l: Vec<pb::ItemQuantity>| pb::PlaceOrderRequest {
        purchase_id: purchase.id.clone(),
        household_id: household.into(),
        lines: l,
    };
    let mut two = lines(&veg, 2);
    two.extend(lines(&fruit, 1));
    h.client
        .place_order(order(&households[0], lines(&veg, 3)))
        .await
        .unwrap();
    let o = h
        .client
        .place_order(order(&households[1], two))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(o.total_fen, 2 * 350 + 800);
    h.client
        .place_order(order(&households[2], lines(&fruit, 5)))
        .await
        .unwrap();
    // Household 0 changes its mind; household 2 withdraws.
    h.client
        .place_order(order(&households[0], lines(&veg, 4)))
        .await
        .unwrap();
    h.client
        .place_order(order(&households[2], vec![]))
        .await
        .unwrap();
    assert_status(
        h.client
            .place_order(order(&households[3], lines(&masks, 1)))
            .await,
        Code::InvalidArgument,
        "lines[0].item_id",
    );
    assert_status(
        h.client
            .place_order(order(&linli_core::new_id(), lines(&veg, 1)))
            .await,
        Code::NotFound,
        "household",
    );
    let got = h
        .client
        .get_group_purchase(pb::GetGroupPurchaseRequest {
            purchase_id: purchase.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.orders.len(), 2);
    assert_eq!(got.total_fen, 4 * 350 + 2 * 350 + 800);

    let close = |version: i64| pb::CloseGroupPurchaseRequest {
        purchase_id: purchase.id.clone(),
        expected_version: version,
        depot_id: depot.clone(),
    };
    assert_status(
        h.client
            .close_group_purchase(close(purchase.version + 3))
            .await,
        Code::Aborted,
        "",
    );
    let closed = h
        .client
        .close_group_purchase(close(purchase.version))
        .await
        .unwrap()
        .into_inner();
    let totals: std::collections::HashMap<String, i64> = closed
        .totals
        .iter()
        .map(|t| (t.item_id.clone(), t.quantity))
        .collect();
    assert_eq!((totals[&veg], totals[&fruit]), (6, 1), "the purchase list");
    assert_eq!(closed.total_fen, got.total_fen);
    let batch = closed.batch.unwrap();
    assert_eq!(batch.households, 2);
    assert_eq!(h.level(&depot, &veg).await, 0, "bought in and sent out");
    assert_status(
        h.client
            .place_order(order(&households[3], lines(&veg, 1)))
            .await,
        Code::FailedPrecondition,
        "closed",
    );
    assert_status(
        h.client
            .close_group_purchase(close(closed.purchase.as_ref().unwrap().version))
            .await,
        Code::FailedPrecondition,
        "closed",
    );

    let deliveries = h
        .client
        .assign_deliveries(pb::AssignDeliveriesRequest {
            batch_id: batch.id.clone(),
            cadre_id: cadre.clone(),
            delivery_ids: vec![],
            count: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(
        deliveries[0].household_id, households[0],
        "vulnerable first"
    );
    assert_eq!(
        deliveries[0].lines,
        lines(&veg, 4),
        "each household gets what it ordered"
    );
    for d in &deliveries {
        h.client
            .record_delivery_outcome(pb::RecordDeliveryOutcomeRequest {
                delivery_id: d.id.clone(),
                expected_version: d.version,
                outcome: pb::DeliveryOutcome::Delivered as i32,
                confirmed_by: "户主".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let p = h
        .client
        .get_batch_progress(pb::GetBatchProgressRequest {
            batch_id: batch.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((p.delivered, p.pending), (2, 0));
    assert_eq!(
        p.batch.unwrap().source,
        format!("group_purchase:{}", purchase.id)
    );
    h.stop().await;
}

async fn a_hand_built_week_of_rosters(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let (community, cadres, stranger, unit) = (
        w.community.clone(),
        w.cadres.clone(),
        w.stranger.clone(),
        w.unit.clone(),
    );
    let checkpoint = h
        .client
        .create_checkpoint(pb::CreateCheckpointRequest {
            idempotency_key: key(),
            community_id: community.clone(),
            name: "八角亭小区东门卡点".into(),
            required_staff: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert_status(
        h.client
            .create_checkpoint(pb::CreateCheckpointRequest {
                idempotency_key: key(),
                community_id: community.clone(),
                name: "x".into(),
                required_staff: 0,
            })
            .await,
        Code::InvalidArgument,
        "required_staff",
    );
    // A week starting eight days ago: two cadres by day (08–20), two by night (20–08).
    let start = hours_ago(8 * 24);
    let start = start - (start + 8 * HOUR).rem_euclid(DAY); // midnight UTC+8
    let shift = |cadre: &str, from: i64, to: i64| pb::AssignShiftRequest {
        idempotency_key: key(),
        checkpoint_id: checkpoint.id.clone(),
        cadre_id: cadre.into(),
        starts_at: Some(at(from)),
        ends_at: Some(at(to)),
    };
    let mut count = 0;
    for day in 0..7 {
        let d = start + day * DAY;
        for (i, cadre) in cadres[..4].iter().enumerate() {
            let (from, to) = if i < 2 {
                (d + 8 * HOUR, d + 20 * HOUR)
            } else {
                (d + 20 * HOUR, d + 32 * HOUR)
            };
            // On the third night, 孟军 leaves at 04:00 instead of 08:00.
            let to = if day == 2 && i == 3 {
                to - 4 * HOUR
            } else {
                to
            };
            h.client.assign_shift(shift(cadre, from, to)).await.unwrap();
            count += 1;
        }
    }
    // Conflicts: two places at once, too many hours, not registered, not on the hour.
    let d = start + DAY;
    assert_status(
        h.client
            .assign_shift(shift(&cadres[0], d + 10 * HOUR, d + 12 * HOUR))
            .await,
        Code::FailedPrecondition,
        "already on duty",
    );
    assert_status(
        h.client
            .assign_shift(shift(&cadres[0], d + 20 * HOUR, d + 24 * HOUR))
            .await,
        Code::FailedPrecondition,
        "hours within 24",
    );
    assert_status(
        h.client
            .assign_shift(shift(&stranger, d, d + 8 * HOUR))
            .await,
        Code::FailedPrecondition,
        "not actively registered",
    );
    assert_status(
        h.client
            .assign_shift(shift(&cadres[4], d + 60, d + 8 * HOUR))
            .await,
        Code::InvalidArgument,
        "starts_at",
    );
    assert_status(
        h.client
            .assign_shift(shift(&cadres[4], d, d + 13 * HOUR))
            .await,
        Code::InvalidArgument,
        "ends_at",
    );

    let report = h
        .client
        .get_roster_report(pb::GetRosterReportRequest {
            community_id: community.clone(),
            from: Some(at(start + 8 * HOUR)),
            to: Some(at(start + 7 * DAY + 8 * HOUR)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.gaps.len(), 1, "{:?}", report.gaps);
    let gap = &report.gaps[0];
    assert_eq!(
        (
            gap.starts_at.unwrap().seconds,
            gap.ends_at.unwrap().seconds,
            gap.staffed,
            gap.required
        ),
        (start + 3 * DAY + 4 * HOUR, start + 3 * DAY + 8 * HOUR, 1, 2)
    );
    assert_eq!(
        (report.coverage[0].hours, report.coverage[0].covered_hours),
        (168, 164)
    );
    assert_eq!(report.person_shifts, count);
    assert_eq!(
        report.by_unit,
        vec![pb::PersonShifts {
            id: unit.clone(),
            shifts: count,
            hours: 28 * 12 - 4
        }]
    );
    assert_eq!(report.by_cadre.len(), 4);
    assert_status(
        h.client
            .get_roster_report(pb::GetRosterReportRequest {
                community_id: community.clone(),
                from: Some(at(start + 1)),
                to: Some(at(start + DAY)),
            })
            .await,
        Code::InvalidArgument,
        "from",
    );

    // Check in and out; a started shift cannot be cancelled, an unstarted one can.
    let s = h
        .client
        .list_shifts(pb::ListShiftsRequest {
            cadre_id: cadres[0].clone(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .shifts;
    assert_eq!(s.len(), 7);
    assert_status(
        h.client
            .check_out_shift(pb::CheckOutShiftRequest {
                shift_id: s[0].id.clone(),
                at: None,
            })
            .await,
        Code::FailedPrecondition,
        "check in",
    );
    let started = s[0].starts_at.unwrap().seconds;
    let checked = h
        .client
        .check_in_shift(pb::CheckInShiftRequest {
            shift_id: s[0].id.clone(),
            at: Some(at(started)),
        })
        .await
        .unwrap()
        .into_inner()
        .shift
        .unwrap();
    assert!(checked.checked_in_at.is_some());
    assert_status(
        h.client
            .check_out_shift(pb::CheckOutShiftRequest {
                shift_id: s[0].id.clone(),
                at: Some(at(started - HOUR)),
            })
            .await,
        Code::InvalidArgument,
        "at",
    );
    h.client
        .check_out_shift(pb::CheckOutShiftRequest {
            shift_id: s[0].id.clone(),
            at: Some(at(started + 12 * HOUR)),
        })
        .await
        .unwrap();
    assert_status(
        h.client
            .cancel_shift(pb::CancelShiftRequest {
                shift_id: s[0].id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "started",
    );
    let cancelled = h
        .client
        .cancel_shift(pb::CancelShiftRequest {
            shift_id: s[1].id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .shift
        .unwrap();
    assert!(cancelled.cancelled);
    let after = h
        .client
        .get_roster_report(pb::GetRosterReportRequest {
            community_id: community.clone(),
            from: Some(at(start + 8 * HOUR)),
            to: Some(at(start + 7 * DAY + 8 * HOUR)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.gaps.len(), 2, "a cancelled shift opens a gap");

    // The checkpoint log: a fever is flagged.
    let log = |kind: pb::LogEntryKind, t: f64| pb::LogCheckpointEntryRequest {
        idempotency_key: key(),
        checkpoint_id: checkpoint.id.clone(),
        shift_id: s[0].id.clone(),
        kind: kind as i32,
        person: "来访者".into(),
        temperature_celsius: t,
        at: None,
        note: String::new(),
    };
    h.client
        .log_checkpoint_entry(log(pb::LogEntryKind::EntryRegistered, 0.0))
        .await
        .unwrap();
    h.client
        .log_checkpoint_entry(log(pb::LogEntryKind::IdCheck, 0.0))
        .await
        .unwrap();
    let normal = h
        .client
        .log_checkpoint_entry(log(pb::LogEntryKind::Temperature, 36.5))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    let fever = h
        .client
        .log_checkpoint_entry(log(pb::LogEntryKind::Temperature, 37.8))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert!(!normal.flagged && fever.flagged);
    assert_status(
        h.client
            .log_checkpoint_entry(log(pb::LogEntryKind::Temperature, 50.0))
            .await,
        Code::InvalidArgument,
        "temperature_celsius",
    );
    assert_status(
        h.client
            .log_checkpoint_entry(log(pb::LogEntryKind::IdCheck, 36.6))
            .await,
        Code::InvalidArgument,
        "temperature_celsius",
    );
    let flagged = h
        .client
        .list_checkpoint_log(pb::ListCheckpointLogRequest {
            checkpoint_id: checkpoint.id.clone(),
            flagged_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(
        flagged.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec![fever.id.as_str()]
    );
    let everything = h
        .client
        .list_checkpoint_log(pb::ListCheckpointLogRequest {
            checkpoint_id: checkpoint.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(everything.len(), 4);
    assert_eq!(
        h.client
            .list_checkpoints(pb::ListCheckpointsRequest {
                community_id: community
            })
            .await
            .unwrap()
            .into_inner()
            .checkpoints,
        vec![checkpoint]
    );
    h.stop().await;
}

async fn the_funds_ledger_is_never_edited(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let community = h.world.community.clone();
    let entry = |direction: pb::FundsDirection, category: pb::FundsCategory, amount: i64| {
        pb::RecordFundsEntryRequest {
            idempotency_key: key(),
            community_id: community.clone(),
            direction: direction as i32,
            category: category as i32,
            amount_fen: amount,
            reference: String::new(),
            approver: "刘海元".into(),
            note: String::new(),
            at: None,
        }
    };
    use pb::{FundsCategory as C, FundsDirection as D};
    let req = entry(D::Income, C::Allocation, 5_000_000);
    let first = h
        .client
        .record_funds_entry(req.clone())
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(
        h.client
            .record_funds_entry(req)
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap(),
        first,
        "idempotent"
    );
    h.client
        .record_funds_entry(entry(D::Income, C::Donation, 1_000_000))
        .await
        .unwrap();
    let wrong = h
        .client
        .record_funds_entry(entry(D::Expense, C::Purchase, 2_500_000))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_status(
        h.client
            .record_funds_entry(entry(D::Income, C::Purchase, 1))
            .await,
        Code::InvalidArgument,
        "category",
    );
    assert_status(
        h.client
            .record_funds_entry(entry(D::Expense, C::Reversal, 1))
            .await,
        Code::InvalidArgument,
        "category",
    );
    assert_status(
        h.client
            .record_funds_entry(entry(D::Expense, C::Repair, 0))
            .await,
        Code::InvalidArgument,
        "amount_fen",
    );
    assert_status(
        h.client
            .record_funds_entry(pb::RecordFundsEntryRequest {
                approver: String::new(),
                ..entry(D::Expense, C::Repair, 10)
            })
            .await,
        Code::InvalidArgument,
        "approver",
    );

    // The purchase was entered wrong: it is reversed, not edited, and entered again.
    let reverse = pb::ReverseFundsEntryRequest {
        idempotency_key: key(),
        entry_id: wrong.id.clone(),
        reason: "金额录错".into(),
        approver: "刘海元".into(),
    };
    let reversal = h
        .client
        .reverse_funds_entry(reverse.clone())
        .await
        .unwrap()
        .into_inner()
        .reversal
        .unwrap();
    assert_eq!(
        h.client
            .reverse_funds_entry(reverse)
            .await
            .unwrap()
            .into_inner()
            .reversal
            .unwrap(),
        reversal,
        "idempotent"
    );
    assert_eq!(
        (
            reversal.direction,
            reversal.category,
            reversal.amount_fen,
            reversal.reverses.as_str()
        ),
        (
            D::Expense as i32,
            C::Reversal as i32,
            2_500_000,
            wrong.id.as_str()
        ),
        "a reversal is booked in its original's direction"
    );
    assert_status(
        h.client
            .reverse_funds_entry(pb::ReverseFundsEntryRequest {
                idempotency_key: key(),
                entry_id: wrong.id.clone(),
                reason: "again".into(),
                approver: "x".into(),
            })
            .await,
        Code::FailedPrecondition,
        "already been reversed",
    );
    assert_status(
        h.client
            .reverse_funds_entry(pb::ReverseFundsEntryRequest {
                idempotency_key: key(),
                entry_id: reversal.id.clone(),
                reason: "x".into(),
                approver: "x".into(),
            })
            .await,
        Code::FailedPrecondition,
        "reversal",
    );
    h.client
        .record_funds_entry(entry(D::Expense, C::Purchase, 250_000))
        .await
        .unwrap();
    let balance = h
        .client
        .get_funds_balance(pb::GetFundsBalanceRequest {
            community_id: community.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (balance.income_fen, balance.expense_fen, balance.balance_fen),
        (
            5_000_000 + 1_000_000,
            // The wrong 2,500,000 and its reversal cancel.
            250_000,
            6_000_000 - 250_000
        ),
        "the reversal cancels the wrong expense: neither total is inflated"
    );
    let entries = h
        .client
        .list_funds_entries(pb::ListFundsEntriesRequest {
            community_id: community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 5);
    assert_eq!(
        entries
            .iter()
            .find(|e| e.id == wrong.id)
            .unwrap()
            .reversed_by,
        reversal.id
    );
    h.stop().await;
}

async fn recurring_deliveries_are_planned_once(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let community = h.world.community.clone();
    let eggs = h.item("鸡蛋", "个").await;
    let depot = h.depot().await;
    h.stock_in(&depot, &eggs, 100).await;
    let now = linli_core::time::now_micros() / 1_000_000;
    let schedule = pb::CreateRecurringDeliveryRequest {
        idempotency_key: key(),
        community_id: community.clone(),
        depot_id: depot.clone(),
        name: "独居老人每周送菜".into(),
        bundle: lines(&eggs, 10),
        recipients: Some(pb::Recipients {
            min_care_level: 4,
            ..Default::default()
        }),
        every_days: 7,
        first_at: Some(at(now - HOUR)),
    };
    assert_status(
        h.client
            .create_recurring_delivery(pb::CreateRecurringDeliveryRequest {
                idempotency_key: key(),
                every_days: 0,
                ..schedule.clone()
            })
            .await,
        Code::InvalidArgument,
        "every_days",
    );
    h.client.create_recurring_delivery(schedule).await.unwrap();
    let (replica, replica_client) = h.replica().await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let mut client = if i % 2 == 0 {
            h.client.clone()
        } else {
            replica_client.clone()
        };
        tasks.push(tokio::spawn(async move {
            client
                .run_schedules(pb::RunSchedulesRequest::default())
                .await
                .map(|r| r.into_inner().batches.len())
        }));
    }
    let mut planned = 0;
    for t in tasks {
        planned += t.await.unwrap().unwrap();
    }
    assert_eq!(
        planned, 1,
        "one occurrence, one batch, whichever replica ran it"
    );
    let batches = h
        .client
        .list_batches(pb::ListBatchesRequest {
            community_id: community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .batches;
    assert_eq!(batches.len(), 1);
    assert_eq!(
        batches[0].households, 1,
        "only 程大娘's household is at intensive care"
    );
    assert!(batches[0].source.starts_with("schedule:"));
    assert_eq!(h.level(&depot, &eggs).await, 90);
    assert_eq!(
        h.client
            .run_schedules(pb::RunSchedulesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .batches
            .len(),
        0,
        "next due in a week"
    );
    replica.stop().await;
    h.stop().await;
}

async fn summary_report_and_audit(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let community = h.world.community.clone();
    let eggs = h.item("鸡蛋", "个").await;
    let depot = h.depot().await;
    h.stock_in(&depot, &eggs, 50).await;
    let batch = h
        .client
        .plan_batch(pb::PlanBatchRequest {
            idempotency_key: key(),
            community_id: community.clone(),
            depot_id: depot.clone(),
            name: "第一批".into(),
            bundle: lines(&eggs, 5),
            recipients: Some(pb::Recipients {
                all: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();
    let ds = h
        .client
        .assign_deliveries(pb::AssignDeliveriesRequest {
            batch_id: batch.id.clone(),
            cadre_id: h.world.cadres[0].clone(),
            delivery_ids: vec![],
            count: 3,
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    for d in &ds {
        h.client
            .record_delivery_outcome(pb::RecordDeliveryOutcomeRequest {
                delivery_id: d.id.clone(),
                expected_version: d.version,
                outcome: pb::DeliveryOutcome::Delivered as i32,
                confirmed_by: "户主".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let s = h
        .client
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: community.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            s.deliveries_made,
            s.deliveries_pending,
            s.checkpoint_gap_hours,
            s.funds_balance_fen
        ),
        (3, 2, 0, Some(0))
    );
    // Two unstaffed gates are short in the same 24 hours: 24 hours with a gap, not 48.
    for gate in ["东门卡点", "西门卡点"] {
        h.client
            .create_checkpoint(pb::CreateCheckpointRequest {
                idempotency_key: key(),
                community_id: community.clone(),
                name: gate.into(),
                required_staff: 1,
            })
            .await
            .unwrap();
    }
    let s = h
        .client
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: community.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.checkpoint_gap_hours, 24);
    let report = h
        .client
        .get_community_report(pb::GetCommunityReportRequest {
            community_id: community.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.households_reached, 3);
    assert_eq!(
        (report.batches[0].delivered, report.batches[0].pending),
        (3, 2)
    );
    let events = h
        .client
        .list_audit_events(pb::ListAuditEventsRequest {
            community_id: community.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "depot.create",
        "stock.move",
        "batch.plan",
        "batch.assign",
        "delivery.outcome",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let ok = h
        .client
        .verify_audit_trail(pb::VerifyAuditTrailRequest {
            community_id: community.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    assert!(ok.intact, "{ok:?}");
    assert!(
        h.client
            .list_audit_events(pb::ListAuditEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .events
            .iter()
            .any(|e| e.action == "item.create")
    );
    h.stop().await;
}

/// A schedule that cannot be planned (out of stock) is logged and retried next
/// time; it does not stop the schedules after it.
async fn one_failing_schedule_does_not_block_the_others(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let community = h.world.community.clone();
    let rice = h.item("大米", "袋").await;
    let eggs = h.item("鸡蛋", "个").await;
    let depot = h.depot().await;
    h.stock_in(&depot, &eggs, 100).await;
    let now = linli_core::time::now_micros() / 1_000_000;
    let schedule = |name: &str, item: &str, first: i64| pb::CreateRecurringDeliveryRequest {
        idempotency_key: key(),
        community_id: community.clone(),
        depot_id: depot.clone(),
        name: name.into(),
        bundle: lines(item, 1),
        recipients: Some(pb::Recipients {
            min_care_level: 4,
            ..Default::default()
        }),
        every_days: 7,
        first_at: Some(at(first)),
    };
    // Due first, and there is no rice at all.
    h.client
        .create_recurring_delivery(schedule("每周送米", &rice, now - 2 * HOUR))
        .await
        .unwrap();
    h.client
        .create_recurring_delivery(schedule("每周送蛋", &eggs, now - HOUR))
        .await
        .unwrap();
    let planned = h
        .client
        .run_schedules(pb::RunSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .batches;
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert!(
        planned[0].name.starts_with("每周送蛋"),
        "{}",
        planned[0].name
    );
    h.stock_in(&depot, &rice, 10).await;
    let retried = h
        .client
        .run_schedules(pb::RunSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .batches;
    assert_eq!(
        retried.len(),
        1,
        "the rice schedule is planned once there is rice"
    );
    assert!(
        retried[0].name.starts_with("每周送米"),
        "{}",
        retried[0].name
    );
    h.stop().await;
}

linli_core::backend_tests!(
    one_failing_schedule_does_not_block_the_others,
    stock_never_goes_below_zero,
    batches_go_to_the_vulnerable_first,
    a_group_purchase_from_open_to_delivered,
    a_hand_built_week_of_rosters,
    the_funds_ledger_is_never_edited,
    recurring_deliveries_are_planned_once,
    summary_report_and_audit,
);
