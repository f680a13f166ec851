//! The logistics service's API as a table: each RPC asks its row of the policy
//! (`policy.rs`) who may call it, then hands the request to its aggregate's
//! module, which validates it (naming the field), keeps the caller to their
//! reach, asks the people service what it must and calls the store.

use tonic::Request;

use linli_proto::logistics::v1 as pb;
use linli_proto::logistics::v1::logistics_service_server::LogisticsService;

use crate::policy::POLICY;
use crate::{
    batches, checkpoint_log, checkpoints, funds, purchases, reports, schedules, stock, watch,
};

pub use crate::context::LogisticsApi;
use crate::context::*;

#[tonic::async_trait]
impl LogisticsService for LogisticsApi {
    async fn create_item(
        &self,
        req: Request<pb::CreateItemRequest>,
    ) -> Resp<pb::CreateItemResponse> {
        let actor = POLICY.allow("CreateItem", &req)?;
        stock::create_item(self, &actor, req).await
    }

    async fn list_items(&self, req: Request<pb::ListItemsRequest>) -> Resp<pb::ListItemsResponse> {
        POLICY.allow("ListItems", &req)?;
        stock::list_items(self, req).await
    }

    async fn create_depot(
        &self,
        req: Request<pb::CreateDepotRequest>,
    ) -> Resp<pb::CreateDepotResponse> {
        let actor = POLICY.allow("CreateDepot", &req)?;
        stock::create_depot(self, &actor, req).await
    }

    async fn list_depots(
        &self,
        req: Request<pb::ListDepotsRequest>,
    ) -> Resp<pb::ListDepotsResponse> {
        let actor = POLICY.allow("ListDepots", &req)?;
        stock::list_depots(self, &actor, req).await
    }

    async fn record_stock_movement(
        &self,
        req: Request<pb::RecordStockMovementRequest>,
    ) -> Resp<pb::RecordStockMovementResponse> {
        let actor = POLICY.allow("RecordStockMovement", &req)?;
        stock::record_stock_movement(self, &actor, req).await
    }

    async fn allocate_stock(
        &self,
        req: Request<pb::AllocateStockRequest>,
    ) -> Resp<pb::AllocateStockResponse> {
        let actor = POLICY.allow("AllocateStock", &req)?;
        stock::allocate_stock(self, &actor, req).await
    }

    async fn get_stock(&self, req: Request<pb::GetStockRequest>) -> Resp<pb::GetStockResponse> {
        let actor = POLICY.allow("GetStock", &req)?;
        stock::get_stock(self, &actor, req).await
    }

    async fn list_stock_movements(
        &self,
        req: Request<pb::ListStockMovementsRequest>,
    ) -> Resp<pb::ListStockMovementsResponse> {
        let actor = POLICY.allow("ListStockMovements", &req)?;
        stock::list_stock_movements(self, &actor, req).await
    }

    async fn open_group_purchase(
        &self,
        req: Request<pb::OpenGroupPurchaseRequest>,
    ) -> Resp<pb::OpenGroupPurchaseResponse> {
        let actor = POLICY.allow("OpenGroupPurchase", &req)?;
        purchases::open_group_purchase(self, &actor, req).await
    }

    async fn place_order(
        &self,
        req: Request<pb::PlaceOrderRequest>,
    ) -> Resp<pb::PlaceOrderResponse> {
        let actor = POLICY.allow("PlaceOrder", &req)?;
        purchases::place_order(self, &actor, req).await
    }

    async fn close_group_purchase(
        &self,
        req: Request<pb::CloseGroupPurchaseRequest>,
    ) -> Resp<pb::CloseGroupPurchaseResponse> {
        let actor = POLICY.allow("CloseGroupPurchase", &req)?;
        purchases::close_group_purchase(self, &actor, req).await
    }

    async fn get_group_purchase(
        &self,
        req: Request<pb::GetGroupPurchaseRequest>,
    ) -> Resp<pb::GetGroupPurchaseResponse> {
        let actor = POLICY.allow("GetGroupPurchase", &req)?;
        purchases::get_group_purchase(self, &actor, req).await
    }

    async fn plan_batch(&self, req: Request<pb::PlanBatchRequest>) -> Resp<pb::PlanBatchResponse> {
        let actor = POLICY.allow("PlanBatch", &req)?;
        batches::plan_batch(self, &actor, req).await
    }

    async fn assign_deliveries(
        &self,
        req: Request<pb::AssignDeliveriesRequest>,
    ) -> Resp<pb::AssignDeliveriesResponse> {
        let actor = POLICY.allow("AssignDeliveries", &req)?;
        batches::assign_deliveries(self, &actor, req).await
    }

    async fn record_delivery_outcome(
        &self,
        req: Request<pb::RecordDeliveryOutcomeRequest>,
    ) -> Resp<pb::RecordDeliveryOutcomeResponse> {
        let actor = POLICY.allow("RecordDeliveryOutcome", &req)?;
        batches::record_delivery_outcome(self, &actor, req).await
    }

    async fn get_batch_progress(
        &self,
        req: Request<pb::GetBatchProgressRequest>,
    ) -> Resp<pb::GetBatchProgressResponse> {
        let actor = POLICY.allow("GetBatchProgress", &req)?;
        batches::get_batch_progress(self, &actor, req).await
    }

    async fn list_batches(
        &self,
        req: Request<pb::ListBatchesRequest>,
    ) -> Resp<pb::ListBatchesResponse> {
        let actor = POLICY.allow("ListBatches", &req)?;
        batches::list_batches(self, &actor, req).await
    }

    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Resp<pb::ListDeliveriesResponse> {
        let actor = POLICY.allow("ListDeliveries", &req)?;
        batches::list_deliveries(self, &actor, req).await
    }

    async fn create_recurring_delivery(
        &self,
        req: Request<pb::CreateRecurringDeliveryRequest>,
    ) -> Resp<pb::CreateRecurringDeliveryResponse> {
        let actor = POLICY.allow("CreateRecurringDelivery", &req)?;
        schedules::create_recurring_delivery(self, &actor, req).await
    }

    async fn run_schedules(
        &self,
        req: Request<pb::RunSchedulesRequest>,
    ) -> Resp<pb::RunSchedulesResponse> {
        POLICY.allow("RunSchedules", &req)?;
        schedules::run_schedules(self, req).await
    }

    async fn create_checkpoint(
        &self,
        req: Request<pb::CreateCheckpointRequest>,
    ) -> Resp<pb::CreateCheckpointResponse> {
        let actor = POLICY.allow("CreateCheckpoint", &req)?;
        checkpoints::create_checkpoint(self, &actor, req).await
    }

    async fn list_checkpoints(
        &self,
        req: Request<pb::ListCheckpointsRequest>,
    ) -> Resp<pb::ListCheckpointsResponse> {
        let actor = POLICY.allow("ListCheckpoints", &req)?;
        checkpoints::list_checkpoints(self, &actor, req).await
    }

    async fn assign_shift(
        &self,
        req: Request<pb::AssignShiftRequest>,
    ) -> Resp<pb::AssignShiftResponse> {
        let actor = POLICY.allow("AssignShift", &req)?;
        checkpoints::assign_shift(self, &actor, req).await
    }

    async fn cancel_shift(
        &self,
        req: Request<pb::CancelShiftRequest>,
    ) -> Resp<pb::CancelShiftResponse> {
        let actor = POLICY.allow("CancelShift", &req)?;
        checkpoints::cancel_shift(self, &actor, req).await
    }

    async fn check_in_shift(
        &self,
        req: Request<pb::CheckInShiftRequest>,
    ) -> Resp<pb::CheckInShiftResponse> {
        let actor = POLICY.allow("CheckInShift", &req)?;
        checkpoints::check_in_shift(self, &actor, req).await
    }

    async fn check_out_shift(
        &self,
        req: Request<pb::CheckOutShiftRequest>,
    ) -> Resp<pb::CheckOutShiftResponse> {
        let actor = POLICY.allow("CheckOutShift", &req)?;
        checkpoints::check_out_shift(self, &actor, req).await
    }

    async fn list_shifts(
        &self,
        req: Request<pb::ListShiftsRequest>,
    ) -> Resp<pb::ListShiftsResponse> {
        let actor = POLICY.allow("ListShifts", &req)?;
        checkpoints::list_shifts(self, &actor, req).await
    }

    async fn get_roster_report(
        &self,
        req: Request<pb::GetRosterReportRequest>,
    ) -> Resp<pb::GetRosterReportResponse> {
        let actor = POLICY.allow("GetRosterReport", &req)?;
        checkpoints::get_roster_report(self, &actor, req).await
    }

    async fn log_checkpoint_entry(
        &self,
        req: Request<pb::LogCheckpointEntryRequest>,
    ) -> Resp<pb::LogCheckpointEntryResponse> {
        let actor = POLICY.allow("LogCheckpointEntry", &req)?;
        checkpoint_log::log_checkpoint_entry(self, &actor, req).await
    }

    async fn list_checkpoint_log(
        &self,
        req: Request<pb::ListCheckpointLogRequest>,
    ) -> Resp<pb::ListCheckpointLogResponse> {
        let actor = POLICY.allow("ListCheckpointLog", &req)?;
        checkpoint_log::list_checkpoint_log(self, &actor, req).await
    }

    async fn record_funds_entry(
        &self,
        req: Request<pb::RecordFundsEntryRequest>,
    ) -> Resp<pb::RecordFundsEntryResponse> {
        let actor = POLICY.allow("RecordFundsEntry", &req)?;
        funds::record_funds_entry(self, &actor, req).await
    }

    async fn reverse_funds_entry(
        &self,
        req: Request<pb::ReverseFundsEntryRequest>,
    ) -> Resp<pb::ReverseFundsEntryResponse> {
        let actor = POLICY.allow("ReverseFundsEntry", &req)?;
        funds::reverse_funds_entry(self, &actor, req).await
    }

    async fn list_funds_entries(
        &self,
        req: Request<pb::ListFundsEntriesRequest>,
    ) -> Resp<pb::ListFundsEntriesResponse> {
        let actor = POLICY.allow("ListFundsEntries", &req)?;
        funds::list_funds_entries(self, &actor, req).await
    }

    async fn get_funds_balance(
        &self,
        req: Request<pb::GetFundsBalanceRequest>,
    ) -> Resp<pb::GetFundsBalanceResponse> {
        let actor = POLICY.allow("GetFundsBalance", &req)?;
        funds::get_funds_balance(self, &actor, req).await
    }

    async fn get_community_report(
        &self,
        req: Request<pb::GetCommunityReportRequest>,
    ) -> Resp<pb::GetCommunityReportResponse> {
        let actor = POLICY.allow("GetCommunityReport", &req)?;
        reports::get_community_report(self, &actor, req).await
    }

    async fn get_community_summary(
        &self,
        req: Request<pb::GetCommunitySummaryRequest>,
    ) -> Resp<pb::GetCommunitySummaryResponse> {
        let actor = POLICY.allow("GetCommunitySummary", &req)?;
        reports::get_community_summary(self, &actor, req).await
    }

    type WatchLogisticsStream = watch::WatchStream;

    async fn watch_logistics(
        &self,
        req: Request<pb::WatchLogisticsRequest>,
    ) -> Resp<Self::WatchLogisticsStream> {
        let actor = POLICY.allow("WatchLogistics", &req)?;
        watch::watch_logistics(self, &actor, req).await
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Resp<pb::ListAuditEventsResponse> {
        let actor = POLICY.allow("ListAuditEvents", &req)?;
        reports::list_audit_events(self, &actor, req).await
    }

    async fn verify_audit_trail(
        &self,
        req: Request<pb::VerifyAuditTrailRequest>,
    ) -> Resp<pb::VerifyAuditTrailResponse> {
        let actor = POLICY.allow("VerifyAuditTrail", &req)?;
        reports::verify_audit_trail(self, &actor, req).await
    }
}
