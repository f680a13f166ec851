//! The story's epidemic figures (seed article, 2021-01-22), reproduced from
//! recorded operations on both backends: vegetables, eggs and fruit carried
//! to 169 households in 11 batches; 2 checkpoints staffed day and night for
//! 52 days (312 person-shifts); more than ¥100,000 spent.
mod common;

use chrono::{FixedOffset, TimeZone};
use common::*;
use linli_core::testing::Backend;
use linli_proto::logistics::v1 as pb;

fn cst_midnight(y: i32, m: u32, d: u32) -> i64 {
    FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, m, d, 0, 0, 0)
        .unwrap()
        .timestamp()
}

async fn the_epidemic_in_figures(backend: Backend) {
    let mut h = Harness::with_households(backend, 169).await;
    let w = &h.world;
    let (community, households, cadres) =
        (w.community.clone(), w.households.clone(), w.cadres.clone());
    let veg = h.item("青菜", "斤").await;
    let eggs = h.item("鸡蛋", "个").await;
    let fruit = h.item("水果", "斤").await;
    let depot = h.depot().await;
    h.stock_in(&depot, &veg, 5000).await;
    h.stock_in(&depot, &eggs, 5000).await;
    h.stock_in(&depot, &fruit, 3000).await;

    // Eleven batches: the first to every household, the rest to the vulnerable or to named ones.
    let mut batches = Vec::new();
    for n in 0..11usize {
        let recipients = match n {
            0 => pb::Recipients {
                all: true,
                ..Default::default()
            },
            1 | 5 | 9 => pb::Recipients {
                min_care_level: 2,
                ..Default::default()
            },
            _ => pb::Recipients {
                household_ids: households
                    .iter()
                    .skip(n * 13 % 150)
                    .take(20)
                    .cloned()
                    .collect(),
                ..Default::default()
            },
        };
        let bundle = vec![
            pb::ItemQuantity {
                item_id: [&veg, &eggs, &fruit][n % 3].clone(),
                quantity: 2,
            },
            pb::ItemQuantity {
                item_id: [&eggs, &fruit, &veg][n % 3].clone(),
                quantity: 1,
            },
        ];
        let req = pb::PlanBatchRequest {
            idempotency_key: key(),
            community_id: community.clone(),
            depot_id: depot.clone(),
            name: format!("第{}批爱心物资", n + 1),
            bundle,
            recipients: Some(recipients),
        };
        let batch = h
            .client
            .plan_batch(req)
            .await
            .unwrap()
            .into_inner()
            .batch
            .unwrap();
        let deliveries = h
            .client
            .assign_deliveries(pb::AssignDeliveriesRequest {
                batch_id: batch.id.clone(),
                cadre_id: cadres[n % cadres.len()].clone(),
                delivery_ids: vec![],
                count: 500,
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        for (i, d) in deliveries.iter().enumerate() {
            let mut d = d.clone();
            if i % 17 == 3 {
                // Nobody home the first time: come back.
                d = h
                    .client
                    .record_delivery_outcome(pb::RecordDeliveryOutcomeRequest {
                        delivery_id: d.id.clone(),
                        expected_version: d.version,
                        outcome: pb::DeliveryOutcome::NotHome as i32,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .delivery
                    .unwrap();
            }
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
        batches.push(batch);
    }

    // Two checkpoints, one person on duty at each around the clock, in 8-hour shifts, for 52 days from 2020-01-26.
    let gates = ["八角亭小区东门", "八角亭小区北门"];
    let mut checkpoints = Vec::new();
    for name in gates {
        let req = pb::CreateCheckpointRequest {
            idempotency_key: key(),
            community_id: community.clone(),
            name: name.into(),
            required_staff: 1,
        };
        checkpoints.push(
            h.client
                .create_checkpoint(req)
                .await
                .unwrap()
                .into_inner()
                .checkpoint
                .unwrap(),
        );
    }
    let start = cst_midnight(2020, 1, 26);
    let days = 52;
    for day in 0..days {
        for slot in 0..6usize {
            // Each of the six cadres keeps the same gate and the same eight hours every day.
            let checkpoint = &checkpoints[slot % 2];
            let from = start + day * DAY + (slot as i64 / 2) * 8 * HOUR;
            let req = pb::AssignShiftRequest {
                idempotency_key: key(),
                checkpoint_id: checkpoint.id.clone(),
                cadre_id: cadres[slot].clone(),
                starts_at: Some(at(from)),
                ends_at: Some(at(from + 8 * HOUR)),
            };
            h.client.assign_shift(req).await.unwrap();
        }
    }

    // Funds: allocations and donations in; purchases of supplies and masks, and the road repair, out.
    use pb::{FundsCategory as C, FundsDirection as D};
    let ledger = [
        (D::Income, C::Allocation, 6_000_000),
        (D::Income, C::Donation, 3_500_000),
        (D::Income, C::Donation, 1_200_000),
        (D::Expense, C::Purchase, 4_380_000),
        (D::Expense, C::Purchase, 2_650_000),
        (D::Expense, C::Purchase, 1_870_000),
        (D::Expense, C::Repair, 1_280_000),
    ];
    for (direction, category, amount) in ledger {
        let req = pb::RecordFundsEntryRequest {
            idempotency_key: key(),
            community_id: community.clone(),
            direction: direction as i32,
            category: category as i32,
            amount_fen: amount,
            approver: "刘海元".into(),
            ..Default::default()
        };
        h.client.record_funds_entry(req).await.unwrap();
    }

    // The figures, from the reports.
    let report = h
        .client
        .get_community_report(pb::GetCommunityReportRequest {
            community_id: community.clone(),
            from: Some(at(linli_core::time::now_micros() / 1_000_000 - 30 * DAY)),
            to: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.batches.len(), 11, "11 batches (批次)");
    assert_eq!(report.households_reached, 169, "169 households reached");
    assert!(report.batches.iter().all(|b| b.pending == 0));
    assert!(
        report.funds_out_fen >= Some(10_000_000),
        "more than ¥100,000 spent: {:?}",
        report.funds_out_fen
    );
    assert_eq!(report.funds_out_fen, Some(10_180_000));
    assert_eq!(report.funds_in_fen, Some(10_700_000));

    let roster = h
        .client
        .get_roster_report(pb::GetRosterReportRequest {
            community_id: community.clone(),
            from: Some(at(start)),
            to: Some(at(start + days * DAY)),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        roster.gaps.is_empty(),
        "covered around the clock: {:?}",
        roster.gaps.first()
    );
    assert_eq!(roster.coverage.len(), 2);
    assert!(
        roster
            .coverage
            .iter()
            .all(|c| c.hours == 52 * 24 && c.covered_hours == c.hours)
    );
    assert_eq!(roster.person_shifts, 312, "300+ person-shifts (人次)");
    assert_eq!(roster.by_unit[0].shifts, 312);
    assert_eq!(roster.by_cadre.len(), 6);

    let summary = h
        .client
        .get_community_summary(pb::GetCommunitySummaryRequest {
            community_id: community.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.deliveries_pending, 0);
    assert_eq!(summary.funds_balance_fen, Some(10_700_000 - 10_180_000));
    // Money is one rule: whoever may not read the funds ledger (a cadre, a
    // resident's family) sees no funds in the summary or the report either.
    let as_cadre = h
        .client
        .get_community_summary(linli_core::testing::as_role(
            pb::GetCommunitySummaryRequest {
                community_id: community.clone(),
            },
            "cadre",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(as_cadre.funds_balance_fen, None);
    assert_eq!(as_cadre.deliveries_made, summary.deliveries_made);
    let report_as_cadre = h
        .client
        .get_community_report(linli_core::testing::as_role(
            pb::GetCommunityReportRequest {
                community_id: community.clone(),
                ..Default::default()
            },
            "cadre",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (report_as_cadre.funds_in_fen, report_as_cadre.funds_out_fen),
        (None, None)
    );
    assert!(
        h.client
            .verify_audit_trail(pb::VerifyAuditTrailRequest {
                community_id: community
            })
            .await
            .unwrap()
            .into_inner()
            .verification
            .unwrap()
            .intact
    );
    h.stop().await;
}

linli_core::backend_tests!(the_epidemic_in_figures);
