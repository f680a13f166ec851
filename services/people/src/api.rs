//! The people service's API as a table: each RPC asks its row of the policy
//! (`policy.rs`) who may call it, then hands the request to its aggregate's
//! module, which validates it, keeps the caller to their reach and calls the store.

use tonic::Request;

use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_server::PeopleService;

use crate::policy::POLICY;
use crate::{
    accounts, cadres, community, duty, households, pairings, places, registrations, residents,
    sessions,
};

pub use crate::context::PeopleApi;
use crate::context::*;

#[tonic::async_trait]
impl PeopleService for PeopleApi {
    async fn create_place(
        &self,
        req: Request<pb::CreatePlaceRequest>,
    ) -> Resp<pb::CreatePlaceResponse> {
        let actor = POLICY.allow("CreatePlace", &req)?;
        places::create_place(self, &actor, req).await
    }

    async fn get_place(&self, req: Request<pb::GetPlaceRequest>) -> Resp<pb::GetPlaceResponse> {
        POLICY.allow("GetPlace", &req)?;
        places::get_place(self, req).await
    }

    async fn list_places(
        &self,
        req: Request<pb::ListPlacesRequest>,
    ) -> Resp<pb::ListPlacesResponse> {
        POLICY.allow("ListPlaces", &req)?;
        places::list_places(self, req).await
    }

    async fn create_household(
        &self,
        req: Request<pb::CreateHouseholdRequest>,
    ) -> Resp<pb::CreateHouseholdResponse> {
        let actor = POLICY.allow("CreateHousehold", &req)?;
        households::create_household(self, &actor, req).await
    }

    async fn get_household(
        &self,
        req: Request<pb::GetHouseholdRequest>,
    ) -> Resp<pb::GetHouseholdResponse> {
        let actor = POLICY.allow("GetHousehold", &req)?;
        households::get_household(self, &actor, req).await
    }

    async fn list_households(
        &self,
        req: Request<pb::ListHouseholdsRequest>,
    ) -> Resp<pb::ListHouseholdsResponse> {
        let actor = POLICY.allow("ListHouseholds", &req)?;
        households::list_households(self, &actor, req).await
    }

    async fn add_resident(
        &self,
        req: Request<pb::AddResidentRequest>,
    ) -> Resp<pb::AddResidentResponse> {
        let actor = POLICY.allow("AddResident", &req)?;
        residents::add_resident(self, &actor, req).await
    }

    async fn get_resident(
        &self,
        req: Request<pb::GetResidentRequest>,
    ) -> Resp<pb::GetResidentResponse> {
        let actor = POLICY.allow("GetResident", &req)?;
        residents::get_resident(self, &actor, req).await
    }

    async fn list_residents(
        &self,
        req: Request<pb::ListResidentsRequest>,
    ) -> Resp<pb::ListResidentsResponse> {
        let actor = POLICY.allow("ListResidents", &req)?;
        residents::list_residents(self, &actor, req).await
    }

    async fn update_resident(
        &self,
        req: Request<pb::UpdateResidentRequest>,
    ) -> Resp<pb::UpdateResidentResponse> {
        let actor = POLICY.allow("UpdateResident", &req)?;
        residents::update_resident(self, &actor, req).await
    }

    async fn remove_resident(
        &self,
        req: Request<pb::RemoveResidentRequest>,
    ) -> Resp<pb::RemoveResidentResponse> {
        let actor = POLICY.allow("RemoveResident", &req)?;
        residents::remove_resident(self, &actor, req).await
    }

    async fn create_unit(
        &self,
        req: Request<pb::CreateUnitRequest>,
    ) -> Resp<pb::CreateUnitResponse> {
        let actor = POLICY.allow("CreateUnit", &req)?;
        cadres::create_unit(self, &actor, req).await
    }

    async fn get_unit(&self, req: Request<pb::GetUnitRequest>) -> Resp<pb::GetUnitResponse> {
        POLICY.allow("GetUnit", &req)?;
        cadres::get_unit(self, req).await
    }

    async fn list_units(&self, req: Request<pb::ListUnitsRequest>) -> Resp<pb::ListUnitsResponse> {
        POLICY.allow("ListUnits", &req)?;
        cadres::list_units(self, req).await
    }

    async fn create_cadre(
        &self,
        req: Request<pb::CreateCadreRequest>,
    ) -> Resp<pb::CreateCadreResponse> {
        let actor = POLICY.allow("CreateCadre", &req)?;
        cadres::create_cadre(self, &actor, req).await
    }

    async fn get_cadre(&self, req: Request<pb::GetCadreRequest>) -> Resp<pb::GetCadreResponse> {
        let actor = POLICY.allow("GetCadre", &req)?;
        cadres::get_cadre(self, &actor, req).await
    }

    async fn list_cadres(
        &self,
        req: Request<pb::ListCadresRequest>,
    ) -> Resp<pb::ListCadresResponse> {
        let actor = POLICY.allow("ListCadres", &req)?;
        cadres::list_cadres(self, &actor, req).await
    }

    async fn request_registration(
        &self,
        req: Request<pb::RequestRegistrationRequest>,
    ) -> Resp<pb::RequestRegistrationResponse> {
        let actor = POLICY.allow("RequestRegistration", &req)?;
        registrations::request_registration(self, &actor, req).await
    }

    async fn approve_registration(
        &self,
        req: Request<pb::ApproveRegistrationRequest>,
    ) -> Resp<pb::ApproveRegistrationResponse> {
        let actor = POLICY.allow("ApproveRegistration", &req)?;
        registrations::approve_registration(self, &actor, req).await
    }

    async fn end_registration(
        &self,
        req: Request<pb::EndRegistrationRequest>,
    ) -> Resp<pb::EndRegistrationResponse> {
        let actor = POLICY.allow("EndRegistration", &req)?;
        registrations::end_registration(self, &actor, req).await
    }

    async fn list_registrations(
        &self,
        req: Request<pb::ListRegistrationsRequest>,
    ) -> Resp<pb::ListRegistrationsResponse> {
        let actor = POLICY.allow("ListRegistrations", &req)?;
        registrations::list_registrations(self, &actor, req).await
    }

    async fn check_registration(
        &self,
        req: Request<pb::CheckRegistrationRequest>,
    ) -> Resp<pb::CheckRegistrationResponse> {
        let actor = POLICY.allow("CheckRegistration", &req)?;
        registrations::check_registration(self, &actor, req).await
    }

    async fn pair_household(
        &self,
        req: Request<pb::PairHouseholdRequest>,
    ) -> Resp<pb::PairHouseholdResponse> {
        let actor = POLICY.allow("PairHousehold", &req)?;
        pairings::pair_household(self, &actor, req).await
    }

    async fn end_pairing(
        &self,
        req: Request<pb::EndPairingRequest>,
    ) -> Resp<pb::EndPairingResponse> {
        let actor = POLICY.allow("EndPairing", &req)?;
        pairings::end_pairing(self, &actor, req).await
    }

    async fn list_pairings(
        &self,
        req: Request<pb::ListPairingsRequest>,
    ) -> Resp<pb::ListPairingsResponse> {
        let actor = POLICY.allow("ListPairings", &req)?;
        pairings::list_pairings(self, &actor, req).await
    }

    async fn get_coverage_report(
        &self,
        req: Request<pb::GetCoverageReportRequest>,
    ) -> Resp<pb::GetCoverageReportResponse> {
        let actor = POLICY.allow("GetCoverageReport", &req)?;
        pairings::get_coverage_report(self, &actor, req).await
    }

    async fn check_in(&self, req: Request<pb::CheckInRequest>) -> Resp<pb::CheckInResponse> {
        let actor = POLICY.allow("CheckIn", &req)?;
        duty::check_in(self, &actor, req).await
    }

    async fn list_check_ins(
        &self,
        req: Request<pb::ListCheckInsRequest>,
    ) -> Resp<pb::ListCheckInsResponse> {
        let actor = POLICY.allow("ListCheckIns", &req)?;
        duty::list_check_ins(self, &actor, req).await
    }

    async fn get_attendance_report(
        &self,
        req: Request<pb::GetAttendanceReportRequest>,
    ) -> Resp<pb::GetAttendanceReportResponse> {
        let actor = POLICY.allow("GetAttendanceReport", &req)?;
        duty::get_attendance_report(self, &actor, req).await
    }

    async fn log_visit(&self, req: Request<pb::LogVisitRequest>) -> Resp<pb::LogVisitResponse> {
        let actor = POLICY.allow("LogVisit", &req)?;
        duty::log_visit(self, &actor, req).await
    }

    async fn list_visits(
        &self,
        req: Request<pb::ListVisitsRequest>,
    ) -> Resp<pb::ListVisitsResponse> {
        let actor = POLICY.allow("ListVisits", &req)?;
        duty::list_visits(self, &actor, req).await
    }

    async fn get_compliance_report(
        &self,
        req: Request<pb::GetComplianceReportRequest>,
    ) -> Resp<pb::GetComplianceReportResponse> {
        let actor = POLICY.allow("GetComplianceReport", &req)?;
        duty::get_compliance_report(self, &actor, req).await
    }

    async fn create_account(
        &self,
        req: Request<pb::CreateAccountRequest>,
    ) -> Resp<pb::CreateAccountResponse> {
        let actor = POLICY.allow("CreateAccount", &req)?;
        accounts::create_account(self, &actor, req).await
    }

    async fn get_account(
        &self,
        req: Request<pb::GetAccountRequest>,
    ) -> Resp<pb::GetAccountResponse> {
        let actor = POLICY.allow("GetAccount", &req)?;
        accounts::get_account(self, &actor, req).await
    }

    async fn list_accounts(
        &self,
        req: Request<pb::ListAccountsRequest>,
    ) -> Resp<pb::ListAccountsResponse> {
        let actor = POLICY.allow("ListAccounts", &req)?;
        accounts::list_accounts(self, &actor, req).await
    }

    async fn verify_password(
        &self,
        req: Request<pb::VerifyPasswordRequest>,
    ) -> Resp<pb::VerifyPasswordResponse> {
        POLICY.allow("VerifyPassword", &req)?;
        accounts::verify_password(self, req).await
    }

    async fn disable_account(
        &self,
        req: Request<pb::DisableAccountRequest>,
    ) -> Resp<pb::DisableAccountResponse> {
        let actor = POLICY.allow("DisableAccount", &req)?;
        sessions::disable_account(self, &actor, req).await
    }

    async fn enable_account(
        &self,
        req: Request<pb::EnableAccountRequest>,
    ) -> Resp<pb::EnableAccountResponse> {
        let actor = POLICY.allow("EnableAccount", &req)?;
        sessions::enable_account(self, &actor, req).await
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Resp<pb::ChangePasswordResponse> {
        let actor = POLICY.allow("ChangePassword", &req)?;
        sessions::change_password(self, &actor, req).await
    }

    async fn reset_password(
        &self,
        req: Request<pb::ResetPasswordRequest>,
    ) -> Resp<pb::ResetPasswordResponse> {
        let actor = POLICY.allow("ResetPassword", &req)?;
        sessions::reset_password(self, &actor, req).await
    }

    async fn end_session(
        &self,
        req: Request<pb::EndSessionRequest>,
    ) -> Resp<pb::EndSessionResponse> {
        let actor = POLICY.allow("EndSession", &req)?;
        sessions::end_session(self, &actor, req).await
    }

    async fn list_ended_sessions(
        &self,
        req: Request<pb::ListEndedSessionsRequest>,
    ) -> Resp<pb::ListEndedSessionsResponse> {
        POLICY.allow("ListEndedSessions", &req)?;
        sessions::list_ended_sessions(self, req).await
    }

    async fn get_community_summary(
        &self,
        req: Request<pb::GetCommunitySummaryRequest>,
    ) -> Resp<pb::GetCommunitySummaryResponse> {
        let actor = POLICY.allow("GetCommunitySummary", &req)?;
        community::get_community_summary(self, &actor, req).await
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Resp<pb::ListAuditEventsResponse> {
        let actor = POLICY.allow("ListAuditEvents", &req)?;
        community::list_audit_events(self, &actor, req).await
    }

    async fn verify_audit_trail(
        &self,
        req: Request<pb::VerifyAuditTrailRequest>,
    ) -> Resp<pb::VerifyAuditTrailResponse> {
        let actor = POLICY.allow("VerifyAuditTrail", &req)?;
        community::verify_audit_trail(self, &actor, req).await
    }
}
