//! The gRPC handlers: read the caller, validate the request (naming the
//! field), ask the people service what it knows, call the store, answer.
use std::collections::{BTreeMap, HashMap};

use tonic::{Request, Response, Status};

use linli_core::auth::Keys;
use linli_core::idempotency::idem_key;
use linli_core::page::PageRequest;
use linli_core::people::People;
use linli_core::time::{from_timestamp, now_micros, past_or_now};
use linli_core::validate::{
    optional_enum, parse_id, parse_name, parse_opt_id, parse_text, required_enum,
};
use linli_core::{Actor, Error, Result, Role, audit};
use linli_proto::logistics::v1 as pb;
use linli_proto::logistics::v1::logistics_service_server::LogisticsService;

use crate::domain::{
    self, DeliveryOutcome, DeliveryStatus, FundsCategory, FundsDirection, LogEntryKind,
    MovementKind,
};
use crate::policy::POLICY;
use crate::store::{
    Lines, NewFunds, NewLogEntry, NewMovement, NewPurchase, NewSchedule, OutcomeReport, Owned,
    ShiftAction, Store,
};

type Resp<T> = std::result::Result<Response<T>, Status>;

pub struct LogisticsApi {
    store: Store,
    people: People,
    keys: Keys,
}

fn parse_bundle(field: &str, lines: &[pb::ItemQuantity]) -> Result<Lines> {
    if lines.is_empty() {
        return Err(Error::invalid(field, "must list at least one item"));
    }
    domain::parse_lines(field, lines.iter().map(|l| (l.item_id.clone(), l.quantity)))
}

/// Which households, as stored with a recurring delivery.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Recipients {
    pub all: bool,
    pub min_care_level: i32,
    pub household_ids: Vec<String>,
}

fn parse_recipients(r: Option<&pb::Recipients>) -> Result<Recipients> {
    let r = r.ok_or_else(|| Error::required("recipients"))?;
    let chosen = usize::from(r.all)
        + usize::from(r.min_care_level != 0)
        + usize::from(!r.household_ids.is_empty());
    if chosen != 1 {
        return Err(Error::invalid(
            "recipients",
            "choose one of all, min_care_level or household_ids",
        ));
    }
    if r.min_care_level != 0 && !(2..=4).contains(&r.min_care_level) {
        return Err(Error::invalid(
            "recipients.min_care_level",
            "must be 2 (watch), 3 (priority) or 4 (intensive)",
        ));
    }
    let mut ids = Vec::new();
    for (i, h) in r.household_ids.iter().enumerate() {
        let id = parse_id(&format!("recipients.household_ids[{i}]"), h)?;
        if ids.contains(&id) {
            return Err(Error::invalid(
                format!("recipients.household_ids[{i}]"),
                "repeats a household",
            ));
        }
        ids.push(id);
    }
    Ok(Recipients {
        all: r.all,
        min_care_level: r.min_care_level,
        household_ids: ids,
    })
}

impl LogisticsApi {
    pub fn new(store: Store, people: People, keys: Keys) -> Self {
        LogisticsApi {
            store,
            people,
            keys,
        }
    }

    /// The record's community, if the caller may see it; for a cadre acting on a
    /// delivery or shift under `Reach::Own`, also that it is their own.
    async fn in_reach(&self, actor: &Actor, kind: Owned, id: &str) -> Result<String> {
        let (community, _) = self.store.owner_of(kind, id).await?;
        actor.check_community(kind.name(), id, &community)?;
        Ok(community)
    }

    async fn own_in_reach(&self, actor: &Actor, kind: Owned, id: &str) -> Result<()> {
        let (community, cadre) = self.store.owner_of(kind, id).await?;
        actor.check_community(kind.name(), id, &community)?;
        if actor.role == Role::Cadre && actor.cadre.as_deref() != Some(cadre.as_str()) {
            return Err(Error::PermissionDenied(format!(
                "a cadre acts on their own {} only",
                kind.name()
            )));
        }
        Ok(())
    }

    /// The households a batch goes to, with their care levels, from the people service.
    pub async fn households(
        people: &People,
        actor: &Actor,
        community_id: &str,
        r: &Recipients,
    ) -> Result<Vec<(String, i32)>> {
        if r.household_ids.is_empty() {
            return people
                .households(actor, community_id, r.min_care_level)
                .await;
        }
        let mut out = Vec::new();
        for (i, id) in r.household_ids.iter().enumerate() {
            let h = people.household(actor, id).await?;
            if h.community_id != community_id {
                return Err(Error::invalid(
                    format!("recipients.household_ids[{i}]"),
                    "is not in the depot's community",
                ));
            }
            out.push((h.id, h.care_level));
        }
        Ok(out)
    }

    /// Plans every recurring delivery that is due; shared by the RPC and the timer.
    pub async fn run_schedules(
        store: &Store,
        people: &People,
        keys: &Keys,
        as_of: i64,
    ) -> Result<Vec<pb::Batch>> {
        // Schedules are planned by the service itself, whoever triggered the run.
        let actor = keys.service_actor("logistics");
        let mut out = Vec::new();
        for s in store.due_schedules(as_of).await? {
            let recipients: Recipients =
                serde_json::from_str(&s.recipients_json).map_err(|e| Error::Internal(e.into()))?;
            let households = Self::households(people, &actor, &s.community_id, &recipients).await?;
            if let Some(batch) = store.run_occurrence(&actor, &s, households).await? {
                out.push(batch);
            }
        }
        Ok(out)
    }
}

/// A cadre listing their own shifts, across checkpoints.
fn own_shifts(actor: &Actor, cadre: &str) -> bool {
    actor.role == Role::Cadre && actor.cadre.as_deref() == Some(cadre)
}

#[tonic::async_trait]
impl LogisticsService for LogisticsApi {
    async fn create_item(
        &self,
        req: Request<pb::CreateItemRequest>,
    ) -> Resp<pb::CreateItemResponse> {
        let actor = POLICY.allow("CreateItem", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let name = parse_name("name", &r.name)?;
        let unit = parse_name("unit_of_measure", &r.unit_of_measure)?;
        let item = self
            .store
            .create_item(&actor, &idem, &name, &unit, r.perishable)
            .await?;
        Ok(Response::new(pb::CreateItemResponse { item: Some(item) }))
    }

    async fn list_items(&self, req: Request<pb::ListItemsRequest>) -> Resp<pb::ListItemsResponse> {
        POLICY.allow("ListItems", &req)?;
        let page = PageRequest::parse(req.get_ref().page_size, &req.get_ref().page_token)?;
        let (items, next_page_token) = self.store.list_items(&page).await?;
        Ok(Response::new(pb::ListItemsResponse {
            items,
            next_page_token,
        }))
    }

    async fn create_depot(
        &self,
        req: Request<pb::CreateDepotRequest>,
    ) -> Resp<pb::CreateDepotResponse> {
        let actor = POLICY.allow("CreateDepot", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let name = parse_name("name", &r.name)?;
        let address = parse_text("address", &r.address, 200)?;
        self.people.community(&actor, &community).await?;
        let depot = self
            .store
            .create_depot(&actor, &idem, &community, &name, &address)
            .await?;
        Ok(Response::new(pb::CreateDepotResponse {
            depot: Some(depot),
        }))
    }

    async fn list_depots(
        &self,
        req: Request<pb::ListDepotsRequest>,
    ) -> Resp<pb::ListDepotsResponse> {
        let actor = POLICY.allow("ListDepots", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let (depots, next_page_token) = self.store.list_depots(&community, &page).await?;
        Ok(Response::new(pb::ListDepotsResponse {
            depots,
            next_page_token,
        }))
    }

    async fn record_stock_movement(
        &self,
        req: Request<pb::RecordStockMovementRequest>,
    ) -> Resp<pb::RecordStockMovementResponse> {
        let actor = POLICY.allow("RecordStockMovement", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let depot = parse_id("depot_id", &r.depot_id)?;
        self.in_reach(&actor, Owned::Depot, &depot).await?;
        let item = parse_id("item_id", &r.item_id)?;
        let kind = required_enum("kind", r.kind, MovementKind::from_proto)?;
        if kind == MovementKind::AllocationOut {
            return Err(
                Error::invalid("kind", "allocations go through AllocateStock or a batch").into(),
            );
        }
        let reason = parse_text("reason", &r.reason, 500)?;
        let quantity = domain::signed_quantity(kind, r.quantity, &reason)?;
        let reference = parse_text("reference", &r.reference, 100)?;
        let at = past_or_now("at", r.at.as_ref())?;
        let (movement, balance) = self
            .store
            .record_movement(
                &actor,
                &idem,
                NewMovement {
                    depot_id: &depot,
                    item_id: &item,
                    kind,
                    quantity,
                    reason: &reason,
                    reference: &reference,
                    at,
                },
            )
            .await?;
        Ok(Response::new(pb::RecordStockMovementResponse {
            movement: Some(movement),
            balance,
        }))
    }

    async fn allocate_stock(
        &self,
        req: Request<pb::AllocateStockRequest>,
    ) -> Resp<pb::AllocateStockResponse> {
        let actor = POLICY.allow("AllocateStock", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let depot = parse_id("depot_id", &r.depot_id)?;
        self.in_reach(&actor, Owned::Depot, &depot).await?;
        let item = parse_id("item_id", &r.item_id)?;
        let quantity = domain::signed_quantity(MovementKind::AllocationOut, r.quantity, "")?;
        let reference = parse_text("reference", &r.reference, 100)?;
        let (movement, balance) = self
            .store
            .record_movement(
                &actor,
                &idem,
                NewMovement {
                    depot_id: &depot,
                    item_id: &item,
                    kind: MovementKind::AllocationOut,
                    quantity,
                    reason: "",
                    reference: &reference,
                    at: now_micros(),
                },
            )
            .await?;
        Ok(Response::new(pb::AllocateStockResponse {
            movement: Some(movement),
            balance,
        }))
    }

    async fn get_stock(&self, req: Request<pb::GetStockRequest>) -> Resp<pb::GetStockResponse> {
        let actor = POLICY.allow("GetStock", &req)?;
        let depot = parse_id("depot_id", &req.get_ref().depot_id)?;
        self.in_reach(&actor, Owned::Depot, &depot).await?;
        Ok(Response::new(pb::GetStockResponse {
            levels: self.store.stock(&depot).await?,
        }))
    }

    async fn list_stock_movements(
        &self,
        req: Request<pb::ListStockMovementsRequest>,
    ) -> Resp<pb::ListStockMovementsResponse> {
        let actor = POLICY.allow("ListStockMovements", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let depot = parse_id("depot_id", &r.depot_id)?;
        self.in_reach(&actor, Owned::Depot, &depot).await?;
        let item = parse_opt_id("item_id", &r.item_id)?.unwrap_or_default();
        let (movements, next_page_token) = self.store.list_movements(&depot, &item, &page).await?;
        Ok(Response::new(pb::ListStockMovementsResponse {
            movements,
            next_page_token,
        }))
    }

    async fn open_group_purchase(
        &self,
        req: Request<pb::OpenGroupPurchaseRequest>,
    ) -> Resp<pb::OpenGroupPurchaseResponse> {
        let actor = POLICY.allow("OpenGroupPurchase", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let title = parse_name("title", &r.title)?;
        let organiser = parse_name("organiser", &r.organiser)?;
        if r.items.is_empty() {
            return Err(Error::invalid("items", "must offer at least one item").into());
        }
        let mut prices = BTreeMap::new();
        for (i, item) in r.items.iter().enumerate() {
            let id = parse_id(&format!("items[{i}].item_id"), &item.item_id)?;
            if !(0..=100_000_000).contains(&item.unit_price_fen) {
                return Err(Error::invalid(
                    format!("items[{i}].unit_price_fen"),
                    "must be from 0 to 100,000,000",
                )
                .into());
            }
            if prices.insert(id, item.unit_price_fen).is_some() {
                return Err(
                    Error::invalid(format!("items[{i}].item_id"), "repeats an item").into(),
                );
            }
        }
        let closes_at = from_timestamp(
            "closes_at",
            r.closes_at
                .as_ref()
                .ok_or_else(|| Error::required("closes_at"))?,
        )?;
        if closes_at <= now_micros() {
            return Err(Error::invalid("closes_at", "must be in the future").into());
        }
        self.people.community(&actor, &community).await?;
        let purchase = self
            .store
            .open_purchase(
                &actor,
                &idem,
                NewPurchase {
                    community_id: &community,
                    title: &title,
                    organiser: &organiser,
                    prices: &prices,
                    closes_at,
                },
            )
            .await?;
        Ok(Response::new(pb::OpenGroupPurchaseResponse {
            purchase: Some(purchase),
        }))
    }

    async fn place_order(
        &self,
        req: Request<pb::PlaceOrderRequest>,
    ) -> Resp<pb::PlaceOrderResponse> {
        let actor = POLICY.allow("PlaceOrder", &req)?;
        let r = req.into_inner();
        let purchase_id = parse_id("purchase_id", &r.purchase_id)?;
        let household_id = parse_id("household_id", &r.household_id)?;
        let lines = domain::parse_lines(
            "lines",
            r.lines.iter().map(|l| (l.item_id.clone(), l.quantity)),
        )?;
        self.in_reach(&actor, Owned::Purchase, &purchase_id).await?;
        actor.check_household(&household_id)?;
        let purchase = self.store.purchase(&purchase_id).await?;
        let household = self.people.household(&actor, &household_id).await?;
        if household.community_id != purchase.community_id {
            return Err(
                Error::invalid("household_id", "is not in the purchase's community").into(),
            );
        }
        let order = self
            .store
            .place_order(&actor, &purchase_id, &household_id, &lines)
            .await?;
        Ok(Response::new(pb::PlaceOrderResponse { order: Some(order) }))
    }

    async fn close_group_purchase(
        &self,
        req: Request<pb::CloseGroupPurchaseRequest>,
    ) -> Resp<pb::CloseGroupPurchaseResponse> {
        let actor = POLICY.allow("CloseGroupPurchase", &req)?;
        let r = req.into_inner();
        let purchase_id = parse_id("purchase_id", &r.purchase_id)?;
        let depot = parse_id("depot_id", &r.depot_id)?;
        self.in_reach(&actor, Owned::Purchase, &purchase_id).await?;
        let purchase = self.store.purchase(&purchase_id).await?;
        let care: HashMap<String, i32> = self
            .people
            .households(&actor, &purchase.community_id, 0)
            .await?
            .into_iter()
            .collect();
        Ok(Response::new(
            self.store
                .close_purchase(&actor, &purchase_id, r.expected_version, &depot, &care)
                .await?,
        ))
    }

    async fn get_group_purchase(
        &self,
        req: Request<pb::GetGroupPurchaseRequest>,
    ) -> Resp<pb::GetGroupPurchaseResponse> {
        let actor = POLICY.allow("GetGroupPurchase", &req)?;
        let id = parse_id("purchase_id", &req.get_ref().purchase_id)?;
        self.in_reach(&actor, Owned::Purchase, &id).await?;
        Ok(Response::new(self.store.get_purchase(&id).await?))
    }

    async fn plan_batch(&self, req: Request<pb::PlanBatchRequest>) -> Resp<pb::PlanBatchResponse> {
        let actor = POLICY.allow("PlanBatch", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let depot_id = parse_id("depot_id", &r.depot_id)?;
        let name = parse_name("name", &r.name)?;
        let bundle = parse_bundle("bundle", &r.bundle)?;
        let recipients = parse_recipients(r.recipients.as_ref())?;
        let depot = self.store.depot(&depot_id).await?;
        if depot.community_id != community {
            return Err(Error::invalid("depot_id", "is in another community").into());
        }
        // Ask people first: if it cannot answer, nothing is reserved.
        let households = Self::households(&self.people, &actor, &community, &recipients).await?;
        let batch = self
            .store
            .plan_batch(&actor, &idem, &depot_id, &name, &bundle, households)
            .await?;
        Ok(Response::new(pb::PlanBatchResponse { batch: Some(batch) }))
    }

    async fn assign_deliveries(
        &self,
        req: Request<pb::AssignDeliveriesRequest>,
    ) -> Resp<pb::AssignDeliveriesResponse> {
        let actor = POLICY.allow("AssignDeliveries", &req)?;
        let r = req.into_inner();
        let batch_id = parse_id("batch_id", &r.batch_id)?;
        let cadre = parse_id("cadre_id", &r.cadre_id)?;
        let ids = r
            .delivery_ids
            .iter()
            .enumerate()
            .map(|(i, d)| parse_id(&format!("delivery_ids[{i}]"), d))
            .collect::<Result<Vec<_>>>()?;
        if ids.is_empty() && !(1..=500).contains(&r.count) {
            return Err(
                Error::invalid("count", "give delivery_ids, or a count from 1 to 500").into(),
            );
        }
        self.in_reach(&actor, Owned::Batch, &batch_id).await?;
        let batch = self.store.batch(&batch_id).await?;
        if !self
            .people
            .is_registered(&actor, &cadre, &batch.community_id)
            .await?
        {
            return Err(Error::FailedPrecondition(format!(
                "cadre {cadre} is not actively registered with community {} (双报到)",
                batch.community_id
            ))
            .into());
        }
        let deliveries = self
            .store
            .assign(&actor, &batch_id, &cadre, &ids, i64::from(r.count))
            .await?;
        Ok(Response::new(pb::AssignDeliveriesResponse { deliveries }))
    }

    async fn record_delivery_outcome(
        &self,
        req: Request<pb::RecordDeliveryOutcomeRequest>,
    ) -> Resp<pb::RecordDeliveryOutcomeResponse> {
        let actor = POLICY.allow("RecordDeliveryOutcome", &req)?;
        let r = req.into_inner();
        let id = parse_id("delivery_id", &r.delivery_id)?;
        self.own_in_reach(&actor, Owned::Delivery, &id).await?;
        let outcome = required_enum("outcome", r.outcome, DeliveryOutcome::from_proto)?;
        let confirmed_by = parse_text("confirmed_by", &r.confirmed_by, 64)?;
        if outcome == DeliveryOutcome::Delivered && confirmed_by.is_empty() {
            return Err(Error::invalid("confirmed_by", "name who received the delivery").into());
        }
        let note = parse_text("note", &r.note, 500)?;
        let at = past_or_now("at", r.at.as_ref())?;
        let report = OutcomeReport {
            expected_version: r.expected_version,
            outcome,
            confirmed_by: &confirmed_by,
            note: &note,
            at,
        };
        let delivery = self.store.record_outcome(&actor, &id, report).await?;
        Ok(Response::new(pb::RecordDeliveryOutcomeResponse {
            delivery: Some(delivery),
        }))
    }

    async fn get_batch_progress(
        &self,
        req: Request<pb::GetBatchProgressRequest>,
    ) -> Resp<pb::GetBatchProgressResponse> {
        let actor = POLICY.allow("GetBatchProgress", &req)?;
        let id = parse_id("batch_id", &req.get_ref().batch_id)?;
        self.in_reach(&actor, Owned::Batch, &id).await?;
        Ok(Response::new(self.store.batch_progress(&id).await?))
    }

    async fn list_batches(
        &self,
        req: Request<pb::ListBatchesRequest>,
    ) -> Resp<pb::ListBatchesResponse> {
        let actor = POLICY.allow("ListBatches", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let (batches, next_page_token) = self.store.list_batches(&community, &page).await?;
        Ok(Response::new(pb::ListBatchesResponse {
            batches,
            next_page_token,
        }))
    }

    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Resp<pb::ListDeliveriesResponse> {
        let actor = POLICY.allow("ListDeliveries", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let batch = parse_id("batch_id", &r.batch_id)?;
        self.in_reach(&actor, Owned::Batch, &batch).await?;
        let status = optional_enum("status", r.status, DeliveryStatus::from_proto)?;
        let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
        let (deliveries, next_page_token) = self
            .store
            .list_deliveries(&batch, status, &cadre, &page)
            .await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries,
            next_page_token,
        }))
    }

    async fn create_recurring_delivery(
        &self,
        req: Request<pb::CreateRecurringDeliveryRequest>,
    ) -> Resp<pb::CreateRecurringDeliveryResponse> {
        let actor = POLICY.allow("CreateRecurringDelivery", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let depot_id = parse_id("depot_id", &r.depot_id)?;
        let name = parse_name("name", &r.name)?;
        let bundle = parse_bundle("bundle", &r.bundle)?;
        let recipients = parse_recipients(r.recipients.as_ref())?;
        if !(1..=90).contains(&r.every_days) {
            return Err(Error::invalid("every_days", "must be from 1 to 90").into());
        }
        let first_at =
            linli_core::time::optional("first_at", r.first_at.as_ref())?.unwrap_or_else(now_micros);
        let depot = self.store.depot(&depot_id).await?;
        if depot.community_id != community {
            return Err(Error::invalid("depot_id", "is in another community").into());
        }
        let json = serde_json::to_string(&recipients).map_err(|e| Error::Internal(e.into()))?;
        let schedule_id = self
            .store
            .create_schedule(
                &actor,
                &idem,
                NewSchedule {
                    depot_id: &depot_id,
                    name: &name,
                    bundle: &bundle,
                    recipients_json: &json,
                    every_days: i64::from(r.every_days),
                    first_at,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateRecurringDeliveryResponse {
            schedule_id,
        }))
    }

    async fn run_schedules(
        &self,
        req: Request<pb::RunSchedulesRequest>,
    ) -> Resp<pb::RunSchedulesResponse> {
        POLICY.allow("RunSchedules", &req)?;
        let as_of = past_or_now("as_of", req.get_ref().as_of.as_ref())?;
        Ok(Response::new(pb::RunSchedulesResponse {
            batches: Self::run_schedules(&self.store, &self.people, &self.keys, as_of).await?,
        }))
    }

    async fn create_checkpoint(
        &self,
        req: Request<pb::CreateCheckpointRequest>,
    ) -> Resp<pb::CreateCheckpointResponse> {
        let actor = POLICY.allow("CreateCheckpoint", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let name = parse_name("name", &r.name)?;
        if !(1..=50).contains(&r.required_staff) {
            return Err(Error::invalid("required_staff", "must be from 1 to 50").into());
        }
        self.people.community(&actor, &community).await?;
        let checkpoint = self
            .store
            .create_checkpoint(&actor, &idem, &community, &name, r.required_staff)
            .await?;
        Ok(Response::new(pb::CreateCheckpointResponse {
            checkpoint: Some(checkpoint),
        }))
    }

    async fn list_checkpoints(
        &self,
        req: Request<pb::ListCheckpointsRequest>,
    ) -> Resp<pb::ListCheckpointsResponse> {
        let actor = POLICY.allow("ListCheckpoints", &req)?;
        let community = parse_id("community_id", &req.get_ref().community_id)?;
        actor.check_community("community", &community, &community)?;
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: self.store.list_checkpoints(&community).await?,
        }))
    }

    async fn assign_shift(
        &self,
        req: Request<pb::AssignShiftRequest>,
    ) -> Resp<pb::AssignShiftResponse> {
        let actor = POLICY.allow("AssignShift", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let checkpoint_id = parse_id("checkpoint_id", &r.checkpoint_id)?;
        let cadre = parse_id("cadre_id", &r.cadre_id)?;
        let start = from_timestamp(
            "starts_at",
            r.starts_at
                .as_ref()
                .ok_or_else(|| Error::required("starts_at"))?,
        )?;
        let end = from_timestamp(
            "ends_at",
            r.ends_at
                .as_ref()
                .ok_or_else(|| Error::required("ends_at"))?,
        )?;
        let span = domain::parse_shift(start, end)?;
        self.in_reach(&actor, Owned::Checkpoint, &checkpoint_id)
            .await?;
        let checkpoint = self.store.checkpoint(&checkpoint_id).await?;
        let unit = self.people.cadre(&actor, &cadre).await?.unit_id;
        if !self
            .people
            .is_registered(&actor, &cadre, &checkpoint.community_id)
            .await?
        {
            return Err(Error::FailedPrecondition(format!(
                "cadre {cadre} is not actively registered with community {} (双报到)",
                checkpoint.community_id
            ))
            .into());
        }
        let shift = self
            .store
            .assign_shift(&actor, &idem, &checkpoint_id, &cadre, &unit, span)
            .await?;
        Ok(Response::new(pb::AssignShiftResponse {
            shift: Some(shift),
        }))
    }

    async fn cancel_shift(
        &self,
        req: Request<pb::CancelShiftRequest>,
    ) -> Resp<pb::CancelShiftResponse> {
        let actor = POLICY.allow("CancelShift", &req)?;
        let id = parse_id("shift_id", &req.get_ref().shift_id)?;
        self.in_reach(&actor, Owned::Shift, &id).await?;
        let shift = self
            .store
            .update_shift(&actor, &id, ShiftAction::Cancel, now_micros())
            .await?;
        Ok(Response::new(pb::CancelShiftResponse {
            shift: Some(shift),
        }))
    }

    async fn check_in_shift(
        &self,
        req: Request<pb::CheckInShiftRequest>,
    ) -> Resp<pb::CheckInShiftResponse> {
        let actor = POLICY.allow("CheckInShift", &req)?;
        let id = parse_id("shift_id", &req.get_ref().shift_id)?;
        self.own_in_reach(&actor, Owned::Shift, &id).await?;
        let at = past_or_now("at", req.get_ref().at.as_ref())?;
        let shift = self
            .store
            .update_shift(&actor, &id, ShiftAction::CheckIn, at)
            .await?;
        Ok(Response::new(pb::CheckInShiftResponse {
            shift: Some(shift),
        }))
    }

    async fn check_out_shift(
        &self,
        req: Request<pb::CheckOutShiftRequest>,
    ) -> Resp<pb::CheckOutShiftResponse> {
        let actor = POLICY.allow("CheckOutShift", &req)?;
        let id = parse_id("shift_id", &req.get_ref().shift_id)?;
        self.own_in_reach(&actor, Owned::Shift, &id).await?;
        let at = past_or_now("at", req.get_ref().at.as_ref())?;
        let shift = self
            .store
            .update_shift(&actor, &id, ShiftAction::CheckOut, at)
            .await?;
        Ok(Response::new(pb::CheckOutShiftResponse {
            shift: Some(shift),
        }))
    }

    async fn list_shifts(
        &self,
        req: Request<pb::ListShiftsRequest>,
    ) -> Resp<pb::ListShiftsResponse> {
        let actor = POLICY.allow("ListShifts", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let checkpoint = parse_opt_id("checkpoint_id", &r.checkpoint_id)?.unwrap_or_default();
        let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
        if !checkpoint.is_empty() {
            self.in_reach(&actor, Owned::Checkpoint, &checkpoint)
                .await?;
        } else if !(actor.is_county() || own_shifts(&actor, &cadre)) {
            // Shifts are listed by checkpoint; a cadre may list their own across checkpoints.
            return Err(Error::required("checkpoint_id").into());
        }
        let from = linli_core::time::optional("from", r.from.as_ref())?.unwrap_or(i64::MIN);
        let to = linli_core::time::optional("to", r.to.as_ref())?.unwrap_or(i64::MAX);
        let (shifts, next_page_token) = self
            .store
            .list_shifts(&checkpoint, &cadre, from, to, &page)
            .await?;
        Ok(Response::new(pb::ListShiftsResponse {
            shifts,
            next_page_token,
        }))
    }

    async fn get_roster_report(
        &self,
        req: Request<pb::GetRosterReportRequest>,
    ) -> Resp<pb::GetRosterReportResponse> {
        let actor = POLICY.allow("GetRosterReport", &req)?;
        let r = req.into_inner();
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let from = from_timestamp(
            "from",
            r.from.as_ref().ok_or_else(|| Error::required("from"))?,
        )?;
        let to = from_timestamp("to", r.to.as_ref().ok_or_else(|| Error::required("to"))?)?;
        if from % domain::HOUR != 0 {
            return Err(Error::invalid("from", "must be on the hour").into());
        }
        if to <= from || (to - from) % domain::HOUR != 0 || to - from > 120 * domain::DAY {
            return Err(
                Error::invalid("to", "must be whole hours after from, at most 120 days").into(),
            );
        }
        Ok(Response::new(
            self.store.roster_report(&community, from, to).await?,
        ))
    }

    async fn log_checkpoint_entry(
        &self,
        req: Request<pb::LogCheckpointEntryRequest>,
    ) -> Resp<pb::LogCheckpointEntryResponse> {
        let actor = POLICY.allow("LogCheckpointEntry", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let checkpoint = parse_id("checkpoint_id", &r.checkpoint_id)?;
        self.in_reach(&actor, Owned::Checkpoint, &checkpoint)
            .await?;
        let shift = parse_opt_id("shift_id", &r.shift_id)?.unwrap_or_default();
        let kind = required_enum("kind", r.kind, LogEntryKind::from_proto)?;
        let person = parse_text("person", &r.person, 64)?;
        let (temperature, flagged) = match kind {
            LogEntryKind::Temperature => (
                r.temperature_celsius,
                domain::check_temperature(r.temperature_celsius, self.store.fever_threshold)?,
            ),
            _ if r.temperature_celsius != 0.0 => {
                return Err(Error::invalid(
                    "temperature_celsius",
                    "is only for a temperature reading",
                )
                .into());
            }
            _ => (0.0, false),
        };
        let at = past_or_now("at", r.at.as_ref())?;
        let note = parse_text("note", &r.note, 500)?;
        let entry = self
            .store
            .log_entry(
                &actor,
                &idem,
                NewLogEntry {
                    checkpoint_id: &checkpoint,
                    shift_id: &shift,
                    kind,
                    person: &person,
                    temperature,
                    flagged,
                    at,
                    note: &note,
                },
            )
            .await?;
        Ok(Response::new(pb::LogCheckpointEntryResponse {
            entry: Some(entry),
        }))
    }

    async fn list_checkpoint_log(
        &self,
        req: Request<pb::ListCheckpointLogRequest>,
    ) -> Resp<pb::ListCheckpointLogResponse> {
        let actor = POLICY.allow("ListCheckpointLog", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let checkpoint = parse_id("checkpoint_id", &r.checkpoint_id)?;
        self.in_reach(&actor, Owned::Checkpoint, &checkpoint)
            .await?;
        let (entries, next_page_token) = self
            .store
            .list_log(&checkpoint, r.flagged_only, &page)
            .await?;
        Ok(Response::new(pb::ListCheckpointLogResponse {
            entries,
            next_page_token,
        }))
    }

    async fn record_funds_entry(
        &self,
        req: Request<pb::RecordFundsEntryRequest>,
    ) -> Resp<pb::RecordFundsEntryResponse> {
        let actor = POLICY.allow("RecordFundsEntry", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let community_id = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community_id, &community_id)?;
        let direction = required_enum("direction", r.direction, FundsDirection::from_proto)?;
        let category = required_enum("category", r.category, FundsCategory::from_proto)?;
        domain::check_funds_category(direction, category)?;
        if !(1..=10_000_000_000).contains(&r.amount_fen) {
            return Err(
                Error::invalid("amount_fen", "must be from 1 fen to 100,000,000 yuan").into(),
            );
        }
        let approver = parse_name("approver", &r.approver)?;
        let entry = NewFunds {
            community_id,
            direction,
            category,
            amount_fen: r.amount_fen,
            reference: parse_text("reference", &r.reference, 100)?,
            approver,
            note: parse_text("note", &r.note, 500)?,
            at: past_or_now("at", r.at.as_ref())?,
        };
        self.people.community(&actor, &entry.community_id).await?;
        let entry = self.store.record_funds(&actor, &idem, entry).await?;
        Ok(Response::new(pb::RecordFundsEntryResponse {
            entry: Some(entry),
        }))
    }

    async fn reverse_funds_entry(
        &self,
        req: Request<pb::ReverseFundsEntryRequest>,
    ) -> Resp<pb::ReverseFundsEntryResponse> {
        let actor = POLICY.allow("ReverseFundsEntry", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let entry = parse_id("entry_id", &r.entry_id)?;
        self.in_reach(&actor, Owned::FundsEntry, &entry).await?;
        let reason = parse_name("reason", &r.reason)?;
        let approver = parse_name("approver", &r.approver)?;
        let reversal = self
            .store
            .reverse_funds(&actor, &idem, &entry, &reason, &approver)
            .await?;
        Ok(Response::new(pb::ReverseFundsEntryResponse {
            reversal: Some(reversal),
        }))
    }

    async fn list_funds_entries(
        &self,
        req: Request<pb::ListFundsEntriesRequest>,
    ) -> Resp<pb::ListFundsEntriesResponse> {
        let actor = POLICY.allow("ListFundsEntries", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let (entries, next_page_token) = self.store.list_funds(&community, &page).await?;
        Ok(Response::new(pb::ListFundsEntriesResponse {
            entries,
            next_page_token,
        }))
    }

    async fn get_funds_balance(
        &self,
        req: Request<pb::GetFundsBalanceRequest>,
    ) -> Resp<pb::GetFundsBalanceResponse> {
        let actor = POLICY.allow("GetFundsBalance", &req)?;
        let community = parse_id("community_id", &req.get_ref().community_id)?;
        actor.check_community("community", &community, &community)?;
        let (income_fen, expense_fen) = self
            .store
            .funds_totals(&community, i64::MIN, i64::MAX)
            .await?;
        Ok(Response::new(pb::GetFundsBalanceResponse {
            income_fen,
            expense_fen,
            balance_fen: income_fen - expense_fen,
        }))
    }

    async fn get_community_report(
        &self,
        req: Request<pb::GetCommunityReportRequest>,
    ) -> Resp<pb::GetCommunityReportResponse> {
        let actor = POLICY.allow("GetCommunityReport", &req)?;
        let r = req.into_inner();
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        let (from, to) = domain::report_period(
            linli_core::time::optional("from", r.from.as_ref())?,
            linli_core::time::optional("to", r.to.as_ref())?,
            now_micros(),
        )?;
        Ok(Response::new(
            self.store.community_report(&community, from, to).await?,
        ))
    }

    async fn get_community_summary(
        &self,
        req: Request<pb::GetCommunitySummaryRequest>,
    ) -> Resp<pb::GetCommunitySummaryResponse> {
        let actor = POLICY.allow("GetCommunitySummary", &req)?;
        let community = parse_id("community_id", &req.get_ref().community_id)?;
        actor.check_community("community", &community, &community)?;
        Ok(Response::new(self.store.summary(&community).await?))
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Resp<pb::ListAuditEventsResponse> {
        let actor = POLICY.allow("ListAuditEvents", &req)?;
        let r = req.into_inner();
        actor.check_community("community", &r.community_id, &r.community_id)?;
        let (events, next_page_token) = audit::list_request(
            &self.store.db,
            &r.community_id,
            &r.entity_id,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn verify_audit_trail(
        &self,
        req: Request<pb::VerifyAuditTrailRequest>,
    ) -> Resp<pb::VerifyAuditTrailResponse> {
        let actor = POLICY.allow("VerifyAuditTrail", &req)?;
        let community = &req.get_ref().community_id;
        actor.check_community("community", community, community)?;
        let verification = audit::verify_request(&self.store.db, community).await?;
        Ok(Response::new(pb::VerifyAuditTrailResponse {
            verification: Some(verification),
        }))
    }
}
