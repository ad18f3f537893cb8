//! Starting a deployment from the dashboard: the form on `/deployments` (shown to people who
//! may deploy in some tenant) posts to `/deployments/new`, which goes through the same use
//! case, checks and audit as `POST /api/v1/deployments`.

use super::session::WebUser;
use super::{page_error, WebError, WebState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use patchwarden_app::authz::Permission;
use patchwarden_wire::agent::PackageTarget;
use patchwarden_wire::api::{CreateDeploymentRequest, RingRequest, Selection, TargetSpec};
use serde::Deserialize;
use std::collections::BTreeMap;

/// (tenant id, name) where this person may deploy.
pub fn deploy_tenants(user: &WebUser) -> Vec<(String, String)> {
    user.tenant_names
        .iter()
        .filter(|(id, _)| user.access.can(id, Permission::Deploy))
        .map(|(id, n)| (id.clone(), n.clone()))
        .collect()
}

#[derive(Debug, Deserialize, Default)]
pub struct NewDeploymentForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub tenant: String,
    /// `all`, `label` or `devices`.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub devices: String,
    /// `security`, `all_updates` or `packages`.
    #[serde(default)]
    pub what: String,
    #[serde(default)]
    pub packages: String,
    #[serde(default)]
    pub require_approval: Option<String>,
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub pilot_percent: String,
    #[serde(default)]
    pub halt_percent: String,
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The request the form describes, or what is wrong with it (for people).
pub fn request_of(
    f: &NewDeploymentForm,
    tenant_name: &str,
) -> Result<CreateDeploymentRequest, String> {
    let target = match f.target.as_str() {
        "all" => TargetSpec {
            all: true,
            ..Default::default()
        },
        "label" => {
            let Some((k, v)) = f.label.trim().split_once('=') else {
                return Err("Give the label as key=value.".into());
            };
            TargetSpec {
                labels: BTreeMap::from([(k.trim().to_owned(), v.trim().to_owned())]),
                ..Default::default()
            }
        }
        "devices" => {
            let devices = words(&f.devices);
            if devices.is_empty() {
                return Err("Name at least one device (hostname or id).".into());
            }
            TargetSpec {
                devices,
                ..Default::default()
            }
        }
        _ => return Err("Choose the devices: all, by label, or by name.".into()),
    };
    let selection = match f.what.as_str() {
        "security" => Selection::Security,
        "all_updates" => Selection::AllUpdates,
        "packages" => {
            let packages: Vec<PackageTarget> = words(&f.packages)
                .into_iter()
                .map(|w| match w.split_once('=') {
                    Some((n, v)) => PackageTarget {
                        name: n.to_owned(),
                        version: Some(v.to_owned()),
                    },
                    None => PackageTarget {
                        name: w,
                        version: None,
                    },
                })
                .collect();
            if packages.is_empty() {
                return Err("Name at least one package (NAME or NAME=VERSION).".into());
            }
            Selection::Packages { packages }
        }
        _ => return Err("Choose what to install.".into()),
    };
    let percent = |s: &str, what: &str| -> Result<Option<u8>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        match s.trim_end_matches('%').parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Some(p)),
            _ => Err(format!("{what} must be a percentage from 1 to 100.")),
        }
    };
    let rings = match percent(&f.pilot_percent, "The pilot ring")? {
        Some(p) => vec![
            RingRequest {
                name: "pilot".into(),
                devices: vec![],
                percent: Some(p),
                rest: false,
            },
            RingRequest {
                name: "broad".into(),
                devices: vec![],
                percent: None,
                rest: true,
            },
        ],
        None => vec![],
    };
    let halt = percent(&f.halt_percent, "The halt threshold")?.map(|p| f64::from(p) / 100.0);
    Ok(CreateDeploymentRequest {
        tenant: Some(tenant_name.to_owned()),
        target,
        selection,
        timeout_secs: None,
        rings,
        gate: None,
        halt_failure_rate: halt,
        halt_min_finished: None,
        concurrency: None,
        require_approval: f.require_approval.is_some(),
        window: Some(f.window.trim().to_owned()).filter(|w| !w.is_empty()),
        window_duration_secs: None,
        exclude: vec![],
        respect_holds: None,
        expedite: false,
        reboot: None,
        retry: None,
        offline: None,
        preflight: None,
        policy: None,
        spread: false,
    })
}

pub async fn new_deployment(
    State(state): State<WebState>,
    user: WebUser,
    Form(form): Form<NewDeploymentForm>,
) -> Result<Response, WebError> {
    user.check_csrf(&form.csrf)?;
    let Some((tenant_id, tenant_name)) = deploy_tenants(&user)
        .into_iter()
        .find(|(id, name)| *id == form.tenant || *name == form.tenant)
    else {
        user.audit.detail("role does not allow deploying here");
        return Err(page_error(
            StatusCode::FORBIDDEN,
            "Your roles do not allow starting a deployment in this tenant.",
        ));
    };
    user.audit.tenant(Some(&tenant_id));
    let req =
        request_of(&form, &tenant_name).map_err(|m| page_error(StatusCode::BAD_REQUEST, &m))?;
    let op = user.actor(Some(&tenant_id));
    match patchwarden_app::deployments::create(&state.app, &op, &req).await {
        Ok(created) => {
            tracing::info!(user = %user.user.login, deployment = %created.id, "deployment started from the dashboard");
            Ok(Redirect::to(&format!("/deployments/{}", created.id)).into_response())
        }
        Err(e) => {
            let e = crate::error::ApiError::from(e);
            Err(page_error(
                if e.status.is_client_error() {
                    e.status
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                &format!("The deployment was not created: {}", e.message),
            ))
        }
    }
}
