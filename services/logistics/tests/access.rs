//! Who may do what, over the wire: every RPC × every role × records of the
//! caller's own community and of another, judged against `policy.rs`; no id of
//! the other community in any answer; and forged identities refused.
mod common;

use common::*;
use linli_core::testing::matrix::{Side, callers, forgeries, walk};
use linli_core::testing::{Backend, TestDb, TestServer, with_token};
use linli_proto::logistics::v1 as pb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use linli_proto::people::v1 as ppb;
use tonic::Code;

/// One community's logistics records, made by an admin.
struct Target {
    community: String,
    household: String,
    cadre: String,
    item: String,
    depot: String,
    purchase: String,
    batch: String,
    delivery: String,
    checkpoint: String,
    shift: String,
    funds: String,
}

impl Target {
    async fn make(
        h: &mut Harness,
        community: &str,
        household: &str,
        cadre: &str,
        item: &str,
    ) -> Target {
        let c = &mut h.client;
        let depot = c
            .create_depot(pb::CreateDepotRequest {
                idempotency_key: key(),
                community_id: community.into(),
                name: "物资点".into(),
                address: "居委会".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .depot
            .unwrap()
            .id;
        h.stock_in(&depot, item, 1000).await;
        let c = &mut h.client;
        let purchase = c
            .open_group_purchase(pb::OpenGroupPurchaseRequest {
                idempotency_key: key(),
                community_id: community.into(),
                title: "团购鸡蛋".into(),
                organiser: "团长".into(),
                items: vec![pb::GroupPurchaseItem {
                    item_id: item.into(),
                    unit_price_fen: 100,
                }],
                closes_at: Some(next_hour(24)),
            })
            .await
            .unwrap()
            .into_inner()
            .purchase
            .unwrap()
            .id;
        let batch = c
            .plan_batch(batch_request(community, &depot, household, item))
            .await
            .unwrap()
            .into_inner()
            .batch
            .unwrap()
            .id;
        let delivery = c
            .assign_deliveries(pb::AssignDeliveriesRequest {
                batch_id: batch.clone(),
                cadre_id: cadre.into(),
                count: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries[0]
            .id
            .clone();
        let checkpoint = c
            .create_checkpoint(pb::CreateCheckpointRequest {
                idempotency_key: key(),
                community_id: community.into(),
                name: "东门".into(),
                required_staff: 1,
            })
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap()
            .id;
        let shift = c
            .assign_shift(pb::AssignShiftRequest {
                idempotency_key: key(),
                checkpoint_id: checkpoint.clone(),
                cadre_id: cadre.into(),
                starts_at: Some(next_hour(2)),
                ends_at: Some(next_hour(4)),
            })
            .await
            .unwrap()
            .into_inner()
            .shift
            .unwrap()
            .id;
        let funds = c
            .record_funds_entry(funds_request(community))
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap()
            .id;
        Target {
            community: community.into(),
            household: household.into(),
            cadre: cadre.into(),
            item: item.into(),
            depot,
            purchase,
            batch,
            delivery,
            checkpoint,
            shift,
            funds,
        }
    }

    fn ids(&self) -> Vec<String> {
        vec![
            self.community.clone(),
            self.household.clone(),
            self.depot.clone(),
            self.purchase.clone(),
            self.batch.clone(),
            self.delivery.clone(),
            self.checkpoint.clone(),
            self.shift.clone(),
            self.funds.clone(),
        ]
    }
}

/// The start of the hour `hours` from now.
fn next_hour(hours: i64) -> prost_types::Timestamp {
    let now = linli_core::time::now_micros() / 1_000_000;
    prost_types::Timestamp {
        seconds: (now / HOUR + hours) * HOUR,
        nanos: 0,
    }
}

fn bundle(item: &str) -> Vec<pb::ItemQuantity> {
    vec![pb::ItemQuantity {
        item_id: item.into(),
        quantity: 1,
    }]
}

fn batch_request(
    community: &str,
    depot: &str,
    household: &str,
    item: &str,
) -> pb::PlanBatchRequest {
    pb::PlanBatchRequest {
        idempotency_key: key(),
        community_id: community.into(),
        depot_id: depot.into(),
        name: "蔬菜包".into(),
        bundle: bundle(item),
        recipients: Some(pb::Recipients {
            household_ids: vec![household.into()],
            ..Default::default()
        }),
    }
}

fn funds_request(community: &str) -> pb::RecordFundsEntryRequest {
    pb::RecordFundsEntryRequest {
        idempotency_key: key(),
        community_id: community.into(),
        direction: pb::FundsDirection::Income as i32,
        category: pb::FundsCategory::Allocation as i32,
        amount_fen: 100_000,
        approver: "王主任".into(),
        ..Default::default()
    }
}

async fn call(c: &mut Client, rpc: &str, t: &Target, token: &str) -> Result<String, tonic::Status> {
    macro_rules! send {
        ($method:ident, $msg:expr) => {
            c.$method(with_token($msg, token))
                .await
                .map(|r| format!("{:?}", r.into_inner()))
        };
    }
    let community = || t.community.clone();
    match rpc {
        "CreateItem" => send!(
            create_item,
            pb::CreateItemRequest {
                idempotency_key: key(),
                name: "大米".into(),
                unit_of_measure: "袋".into(),
                perishable: false,
            }
        ),
        "ListItems" => send!(list_items, pb::ListItemsRequest::default()),
        "CreateDepot" => send!(
            create_depot,
            pb::CreateDepotRequest {
                idempotency_key: key(),
                community_id: community(),
                name: "二号物资点".into(),
                address: "活动室".into(),
            }
        ),
        "ListDepots" => send!(
            list_depots,
            pb::ListDepotsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "RecordStockMovement" => send!(
            record_stock_movement,
            pb::RecordStockMovementRequest {
                idempotency_key: key(),
                depot_id: t.depot.clone(),
                item_id: t.item.clone(),
                kind: pb::MovementKind::DonationIn as i32,
                quantity: 1,
                ..Default::default()
            }
        ),
        "AllocateStock" => send!(
            allocate_stock,
            pb::AllocateStockRequest {
                idempotency_key: key(),
                depot_id: t.depot.clone(),
                item_id: t.item.clone(),
                quantity: 1,
                reference: String::new(),
            }
        ),
        "GetStock" => send!(
            get_stock,
            pb::GetStockRequest {
                depot_id: t.depot.clone()
            }
        ),
        "ListStockMovements" => send!(
            list_stock_movements,
            pb::ListStockMovementsRequest {
                depot_id: t.depot.clone(),
                ..Default::default()
            }
        ),
        "OpenGroupPurchase" => send!(
            open_group_purchase,
            pb::OpenGroupPurchaseRequest {
                idempotency_key: key(),
                community_id: community(),
                title: "团购水果".into(),
                organiser: "团长".into(),
                items: vec![pb::GroupPurchaseItem {
                    item_id: t.item.clone(),
                    unit_price_fen: 500,
                }],
                closes_at: Some(next_hour(24)),
            }
        ),
        "PlaceOrder" => send!(
            place_order,
            pb::PlaceOrderRequest {
                purchase_id: t.purchase.clone(),
                household_id: t.household.clone(),
                lines: bundle(&t.item),
            }
        ),
        "CloseGroupPurchase" => send!(
            close_group_purchase,
            pb::CloseGroupPurchaseRequest {
                purchase_id: t.purchase.clone(),
                expected_version: 999,
                depot_id: t.depot.clone(),
            }
        ),
        "GetGroupPurchase" => send!(
            get_group_purchase,
            pb::GetGroupPurchaseRequest {
                purchase_id: t.purchase.clone(),
            }
        ),
        "PlanBatch" => send!(
            plan_batch,
            batch_request(&t.community, &t.depot, &t.household, &t.item)
        ),
        "AssignDeliveries" => send!(
            assign_deliveries,
            pb::AssignDeliveriesRequest {
                batch_id: t.batch.clone(),
                cadre_id: t.cadre.clone(),
                count: 1,
                ..Default::default()
            }
        ),
        "RecordDeliveryOutcome" => send!(
            record_delivery_outcome,
            pb::RecordDeliveryOutcomeRequest {
                delivery_id: t.delivery.clone(),
                expected_version: 999,
                outcome: pb::DeliveryOutcome::Delivered as i32,
                confirmed_by: "程桂兰".into(),
                ..Default::default()
            }
        ),
        "GetBatchProgress" => send!(
            get_batch_progress,
            pb::GetBatchProgressRequest {
                batch_id: t.batch.clone(),
            }
        ),
        "ListBatches" => send!(
            list_batches,
            pb::ListBatchesRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "ListDeliveries" => send!(
            list_deliveries,
            pb::ListDeliveriesRequest {
                batch_id: t.batch.clone(),
                ..Default::default()
            }
        ),
        "CreateRecurringDelivery" => send!(
            create_recurring_delivery,
            pb::CreateRecurringDeliveryRequest {
                idempotency_key: key(),
                community_id: community(),
                depot_id: t.depot.clone(),
                name: "每周送菜".into(),
                bundle: bundle(&t.item),
                recipients: Some(pb::Recipients {
                    household_ids: vec![t.household.clone()],
                    ..Default::default()
                }),
                every_days: 7,
                first_at: Some(next_hour(-24)),
            }
        ),
        "RunSchedules" => send!(run_schedules, pb::RunSchedulesRequest { as_of: None }),
        "CreateCheckpoint" => send!(
            create_checkpoint,
            pb::CreateCheckpointRequest {
                idempotency_key: key(),
                community_id: community(),
                name: "西门".into(),
                required_staff: 1,
            }
        ),
        "ListCheckpoints" => send!(
            list_checkpoints,
            pb::ListCheckpointsRequest {
                community_id: community(),
            }
        ),
        "AssignShift" => send!(
            assign_shift,
            pb::AssignShiftRequest {
                idempotency_key: key(),
                checkpoint_id: t.checkpoint.clone(),
                cadre_id: t.cadre.clone(),
                starts_at: Some(next_hour(6)),
                ends_at: Some(next_hour(8)),
            }
        ),
        "CancelShift" => send!(
            cancel_shift,
            pb::CancelShiftRequest {
                shift_id: t.shift.clone()
            }
        ),
        "CheckInShift" => send!(
            check_in_shift,
            pb::CheckInShiftRequest {
                shift_id: t.shift.clone(),
                at: None,
            }
        ),
        "CheckOutShift" => send!(
            check_out_shift,
            pb::CheckOutShiftRequest {
                shift_id: t.shift.clone(),
                at: None,
            }
        ),
        "ListShifts" => send!(
            list_shifts,
            pb::ListShiftsRequest {
                checkpoint_id: t.checkpoint.clone(),
                ..Default::default()
            }
        ),
        "GetRosterReport" => send!(
            get_roster_report,
            pb::GetRosterReportRequest {
                community_id: community(),
                from: Some(next_hour(0)),
                to: Some(next_hour(24)),
            }
        ),
        "LogCheckpointEntry" => send!(
            log_checkpoint_entry,
            pb::LogCheckpointEntryRequest {
                idempotency_key: key(),
                checkpoint_id: t.checkpoint.clone(),
                kind: pb::LogEntryKind::EntryRegistered as i32,
                person: "张三".into(),
                ..Default::default()
            }
        ),
        "ListCheckpointLog" => send!(
            list_checkpoint_log,
            pb::ListCheckpointLogRequest {
                checkpoint_id: t.checkpoint.clone(),
                ..Default::default()
            }
        ),
        "RecordFundsEntry" => send!(record_funds_entry, funds_request(&t.community)),
        "ReverseFundsEntry" => send!(
            reverse_funds_entry,
            pb::ReverseFundsEntryRequest {
                idempotency_key: key(),
                entry_id: t.funds.clone(),
                reason: "记错".into(),
                approver: "王主任".into(),
            }
        ),
        "ListFundsEntries" => send!(
            list_funds_entries,
            pb::ListFundsEntriesRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "GetFundsBalance" => send!(
            get_funds_balance,
            pb::GetFundsBalanceRequest {
                community_id: community(),
            }
        ),
        "GetCommunityReport" => send!(
            get_community_report,
            pb::GetCommunityReportRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "WatchLogistics" => {
            let mut stream = c
                .watch_logistics(with_token(
                    pb::WatchLogisticsRequest {
                        community_id: community(),
                        after_seq: 0,
                        from_now: false,
                    },
                    token,
                ))
                .await?
                .into_inner();
            // The first change of the history: it must be of the asked community.
            let first =
                tokio::time::timeout(std::time::Duration::from_secs(2), stream.message()).await;
            Ok(format!("{first:?}"))
        }
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
    let item = h.item("鸡蛋", "个").await;
    // The other community needs a household and a registered cadre of its own.
    let other_household = h
        .people
        .create_household(ppb::CreateHouseholdRequest {
            idempotency_key: key(),
            community_id: h.world.other_community.clone(),
            address: "月亮山1号".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap()
        .id;
    let stranger = h.world.stranger.clone();
    let reg = h
        .people
        .request_registration(ppb::RequestRegistrationRequest {
            idempotency_key: key(),
            cadre_id: stranger.clone(),
            community_id: h.world.other_community.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    h.people
        .approve_registration(ppb::ApproveRegistrationRequest {
            registration_id: reg.id,
            expected_version: reg.version,
            active_from: None,
        })
        .await
        .unwrap();
    let (community, household, cadre) = (
        h.world.community.clone(),
        h.world.households[0].clone(),
        h.world.cadres[0].clone(),
    );
    let own = Target::make(&mut h, &community, &household, &cadre, &item).await;
    let other_community = h.world.other_community.clone();
    let other = Target::make(&mut h, &other_community, &other_household, &stranger, &item).await;
    let foreign = other.ids();

    let callers = callers(&own.community, &own.cadre, &own.household);
    let gateway_db = TestDb::new(Backend::Sqlite).await;
    let gateway = match via_gateway {
        true => Some(
            TestServer::spawn(
                linli_gateway::Application::in_front_of(
                    &gateway_db.url,
                    &format!("http://{}", h.people_server.as_ref().unwrap().addr),
                    "http://127.0.0.1:9",
                    &format!("http://{}", h.server.addr),
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
        .map(|g| LogisticsServiceClient::new(linli_core::testing::authed(g.channel.clone())));
    let tally = walk(
        &linli_logistics::policy::POLICY,
        &callers,
        &foreign,
        async |rpc, side, token| {
            let target = if side == Side::Own { &own } else { &other };
            call(
                through.as_mut().unwrap_or(&mut h.client),
                rpc,
                target,
                token,
            )
            .await
        },
    )
    .await;
    tally.assert_clean();
    h.stop().await;
}

/// Forged identities, over the wire: each is UNAUTHENTICATED; a genuine token passes.
async fn forged_identities_are_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut bare = LogisticsServiceClient::new(h.server.channel.clone());
    for (what, req) in forgeries(pb::ListItemsRequest::default()) {
        let status = bare.list_items(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    bare.list_items(with_token(
        pb::ListItemsRequest::default(),
        &linli_core::testing::admin_token(),
    ))
    .await
    .expect("a genuine token passes");
    h.stop().await;
}

linli_core::backend_tests!(
    every_rpc_every_role_both_communities,
    forged_identities_are_refused
);
