//! The OpenAPI document, generated from the handlers and the wire types.

use crate::{agent_api, operator_api};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["operator", "device"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Patchwarden API", description = "Agent protocol and operator API. Errors carry an ErrorBody."),
    paths(
        agent_api::enroll, agent_api::checkin, agent_api::work, agent_api::job_started, agent_api::job_result,
        operator_api::create_enroll_token, operator_api::list_enroll_tokens, operator_api::revoke_enroll_token,
        operator_api::list_devices, operator_api::get_device,
        operator_api::create_deployment, operator_api::list_deployments, operator_api::get_deployment,
        crate::history::list_failures,
        crate::history::reset_failures,
        crate::triage::assign, crate::triage::resolve, crate::triage::accept_risk, crate::triage::retry,
        crate::vulns::import_feed, crate::vulns::list_feeds, crate::vulns::list_vulns, crate::vulns::show_vuln,
        crate::sla::get_sla_policy, crate::sla::put_sla_policy,
        operator_api::approve_deployment, operator_api::reject_deployment, operator_api::halt_deployment,
        operator_api::resume_deployment, operator_api::cancel_deployment,
        crate::preflight::start_preflight,
        crate::policies::create_policy, crate::policies::list_policies, crate::policies::get_policy,
        crate::policies::update_policy, crate::policies::delete_policy, crate::policies::apply,
        crate::policies::list_rejected, crate::policies::unreject, crate::policies::set_device_labels,
        crate::reports::compliance_report, crate::reports::take_snapshot,
        crate::audit::list_audit,
        crate::people::list_users, crate::people::create_user, crate::people::disable_user,
        crate::people::list_tokens, crate::people::create_token, crate::people::revoke_token,
    ),
    modifiers(&Security)
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
