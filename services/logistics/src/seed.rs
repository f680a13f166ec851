//! Demo logistics for 双泉社区, read against the people service's demo data:
//! stock at the community depot, a finished batch to every vulnerable
//! household and a running one to those living alone, a weekly recurring
//! delivery, a week of checkpoint rosters (with one gap to find), and a
//! funds ledger with one corrected entry. Keyed, so seeding again changes nothing.
use std::collections::BTreeMap;

use linli_core::Actor;
use linli_core::idempotency::IdemKey;
use linli_core::people::People;
use linli_core::time::now_micros;

use crate::domain::{
    self, DeliveryOutcome, DeliveryStatus, FundsCategory, FundsDirection, MovementKind, Span,
};
use crate::store::{NewFunds, NewMovement, NewSchedule, OutcomeReport, Store};

fn key(k: &str) -> IdemKey {
    IdemKey {
        key: format!("seed:{k}"),
        fingerprint: format!("seed:{k}"),
    }
}

/// Seeds as `actor`, whose token the people service accepts (the service's own).
pub async fn run(store: &Store, people: &People, actor: &Actor) -> anyhow::Result<()> {
    let actor = actor.clone();
    let community = people
        .community_named(&actor, "双泉社区")
        .await
        .map_err(|_| {
            anyhow::anyhow!("双泉社区 is not in the people service; run `linli-people seed` first")
        })?;
    let cadres = people.cadres(&actor, &community.id).await?;
    if cadres.len() < 6 {
        anyhow::bail!("the people service lacks the demo cadres; run `linli-people seed` first");
    }
    let c = community.id.as_str();
    let now = now_micros();

    let mut items = BTreeMap::new();
    for (name, unit, perishable) in [
        ("青菜", "斤", true),
        ("鸡蛋", "个", true),
        ("水果", "斤", true),
        ("口罩", "个", false),
        ("大米", "袋", false),
    ] {
        let item = store
            .create_item(
                &actor,
                &key(&format!("item:{name}")),
                name,
                unit,
                perishable,
            )
            .await?;
        items.insert(name, item.id);
    }
    let depot = store
        .create_depot(
            &actor,
            &key("depot"),
            c,
            "双泉社区物资点",
            "双泉社区居委会一楼",
        )
        .await?;
    for (name, qty) in [
        ("青菜", 2000),
        ("鸡蛋", 3000),
        ("水果", 1200),
        ("口罩", 5000),
        ("大米", 400),
    ] {
        store
            .record_movement(
                &actor,
                &key(&format!("stock:{name}")),
                NewMovement {
                    depot_id: &depot.id,
                    item_id: &items[name],
                    kind: MovementKind::DonationIn,
                    quantity: qty,
                    reason: "",
                    reference: "爱心企业捐赠",
                    at: now,
                },
            )
            .await?;
    }

    // A finished batch to every vulnerable household, and one under way to those in intensive care.
    let vulnerable = people.households(&actor, c, 2).await?;
    let alone = people.households(&actor, c, 4).await?;
    let bundle = |pairs: &[(&str, i64)]| {
        pairs
            .iter()
            .map(|(n, q)| (items[n].clone(), *q))
            .collect::<BTreeMap<_, _>>()
    };
    let first = store
        .plan_batch(
            &actor,
            &key("batch:1"),
            &depot.id,
            "第1批：困难家庭爱心物资",
            &bundle(&[("青菜", 5), ("鸡蛋", 10), ("口罩", 10)]),
            vulnerable,
        )
        .await?;
    let second = store
        .plan_batch(
            &actor,
            &key("batch:2"),
            &depot.id,
            "第2批：独居老人送菜上门",
            &bundle(&[("青菜", 3), ("水果", 2)]),
            alone,
        )
        .await?;
    for (batch, share) in [(&first, 1.0), (&second, 0.5)] {
        let fresh = store
            .assign(&actor, &batch.id, &cadres[1].id, &[], 500)
            .await?;
        let done = (fresh.len() as f64 * share) as usize;
        for (i, d) in fresh.iter().take(done).enumerate() {
            let outcome = if i % 9 == 4 {
                DeliveryOutcome::NotHome
            } else {
                DeliveryOutcome::Delivered
            };
            let report = OutcomeReport {
                expected_version: d.version,
                outcome,
                confirmed_by: "户主",
                note: "",
                at: now,
            };
            let d = store.record_outcome(&actor, &d.id, report).await?;
            if d.status == DeliveryStatus::Pending.to_proto() && share == 1.0 {
                let report = OutcomeReport {
                    expected_version: d.version,
                    outcome: DeliveryOutcome::Delivered,
                    confirmed_by: "户主",
                    note: "第二次上门",
                    at: now,
                };
                store.record_outcome(&actor, &d.id, report).await?;
            }
        }
    }
    let recipients =
        serde_json::json!({ "all": false, "min_care_level": 4, "household_ids": [] }).to_string();
    store
        .create_schedule(
            &actor,
            &key("schedule:weekly"),
            NewSchedule {
                depot_id: &depot.id,
                name: "独居老人每周送菜",
                bundle: &bundle(&[("青菜", 3), ("鸡蛋", 6)]),
                recipients_json: &recipients,
                every_days: 7,
                first_at: now + domain::DAY,
            },
        )
        .await?;

    // This week's rosters at the two gates: six cadres, one gate each, eight hours a day.
    let gates = [
        store
            .create_checkpoint(&actor, &key("checkpoint:east"), c, "八角亭小区东门卡点", 1)
            .await?,
        store
            .create_checkpoint(&actor, &key("checkpoint:north"), c, "八角亭小区北门卡点", 1)
            .await?,
    ];
    let today = now - (now + 8 * domain::HOUR).rem_euclid(domain::DAY);
    for day in -3..4i64 {
        for (slot, cadre) in cadres.iter().take(6).enumerate() {
            // This evening nobody comes to the north gate: a gap the roster report and the summary show.
            if day == 0 && slot == 5 {
                continue;
            }
            let start = today + day * domain::DAY + (slot as i64 / 2) * 8 * domain::HOUR;
            let span = Span {
                start,
                end: start + 8 * domain::HOUR,
            };
            let gate = &gates[slot % 2];
            store
                .assign_shift(
                    &actor,
                    &key(&format!("shift:{day}:{slot}")),
                    &gate.id,
                    &cadre.id,
                    &cadre.unit_id,
                    span,
                )
                .await?;
        }
    }

    // The funds ledger, with one entry entered wrong and reversed.
    let entries = [
        (
            "allocation",
            FundsDirection::Income,
            FundsCategory::Allocation,
            6_000_000,
            "县财政防疫专项",
        ),
        (
            "donation",
            FundsDirection::Income,
            FundsCategory::Donation,
            4_500_000,
            "爱心企业捐款",
        ),
        (
            "masks",
            FundsDirection::Expense,
            FundsCategory::Purchase,
            1_860_000,
            "口罩、消毒液",
        ),
        (
            "vegetables",
            FundsDirection::Expense,
            FundsCategory::Purchase,
            3_240_000,
            "蔬菜、鸡蛋、水果",
        ),
        (
            "mistake",
            FundsDirection::Expense,
            FundsCategory::Purchase,
            8_800_000,
            "录入错误",
        ),
        (
            "road",
            FundsDirection::Expense,
            FundsCategory::Repair,
            4_980_000,
            "八角亭副食批发街路面修复",
        ),
    ];
    let mut mistake = None;
    for (k, direction, category, amount, reference) in entries {
        let e = NewFunds {
            community_id: c.into(),
            direction,
            category,
            amount_fen: amount,
            reference: reference.into(),
            approver: "刘海元".into(),
            note: String::new(),
            at: now,
        };
        let entry = store
            .record_funds(&actor, &key(&format!("funds:{k}")), e)
            .await?;
        if k == "mistake" {
            mistake = Some(entry.id);
        }
    }
    if let Some(id) = mistake {
        store
            .reverse_funds(
                &actor,
                &key("funds:mistake:reversal"),
                &id,
                "金额录入错误，冲正",
                "刘海元",
            )
            .await?;
    }
    let summary = store.summary(c).await?;
    println!(
        "demo logistics: {} — {} deliveries made, {} pending, {} checkpoint gap hours in the next 24, funds balance ¥{:.2}",
        community.name,
        summary.deliveries_made,
        summary.deliveries_pending,
        summary.checkpoint_gap_hours,
        summary.funds_balance_fen.unwrap_or_default() as f64 / 100.0
    );
    Ok(())
}
