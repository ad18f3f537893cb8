//! The OpenAPI document, generated from the handlers and the wire types.

use crate::api::{
    agent, audit, deployments, devices, enrollment, failures, people, policies, reports, vulns,
};
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
        agent::enroll, agent::checkin, agent::work, agent::job_started, agent::job_result,
        enrollment::create_enroll_token, enrollment::list_enroll_tokens, enrollment::revoke_enroll_token,
        devices::list_devices, devices::get_device, devices::set_device_labels, devices::reset_failures,
        deployments::create_deployment, deployments::list_deployments, deployments::get_deployment,
        deployments::approve_deployment, deployments::reject_deployment, deployments::halt_deployment,
        deployments::resume_deployment, deployments::cancel_deployment,
        deployments::start_preflight, deployments::list_rejected, deployments::unreject,
        failures::list_failures, failures::assign, failures::resolve, failures::accept_risk, failures::retry,
        vulns::import_feed, vulns::list_feeds, vulns::list_vulns, vulns::show_vuln,
        vulns::get_sla_policy, vulns::put_sla_policy,
        policies::create_policy, policies::list_policies, policies::get_policy,
        policies::update_policy, policies::delete_policy, policies::apply,
        reports::compliance_report, reports::take_snapshot,
        audit::list_audit,
        people::list_users, people::create_user, people::disable_user,
        people::list_tokens, people::create_token, people::revoke_token,
    ),
    modifiers(&Security)
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
