//! Enrollment: trade a one-time token for a device identity and store it.

use crate::client::Client;
use crate::daemon::{AgentError, AGENT_VERSION};
use crate::inventory::HostPaths;
use crate::state::{State, StateDir};
use patchwarden_wire::agent::EnrollRequest;
use patchwarden_wire::PROTOCOL_VERSION;
use std::fs;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("already enrolled as device {device_id} with {server}; pass --force to enroll again")]
    AlreadyEnrolled { device_id: String, server: String },
    #[error(transparent)]
    Agent(#[from] AgentError),
}

pub fn enroll(
    dir: &StateDir,
    server: &str,
    token: &str,
    force: bool,
) -> Result<State, EnrollError> {
    if let Some(st) = dir.load().map_err(AgentError::from)? {
        if !force {
            return Err(EnrollError::AlreadyEnrolled {
                device_id: st.device_id,
                server: st.server_url,
            });
        }
    }
    let paths = HostPaths::default();
    let read = |p: &str| {
        fs::read_to_string(paths.at(p))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let mut hostname = read("/etc/hostname");
    if hostname.is_empty() {
        hostname = read("/proc/sys/kernel/hostname");
    }
    let req = EnrollRequest {
        token: token.trim().to_owned(),
        hostname,
        machine_id: read("/etc/machine-id"),
        agent_version: AGENT_VERSION.to_owned(),
        protocol_version: PROTOCOL_VERSION,
    };
    let resp = Client::new(server, None)
        .enroll(&req)
        .map_err(AgentError::from)?;
    let state = State {
        server_url: server.trim_end_matches('/').to_owned(),
        device_id: resp.device_id,
        device_secret: resp.device_secret,
        tenant: resp.tenant,
        checkin_interval_secs: resp.checkin_interval_secs,
        last_acked_inventory_hash: None,
        work_signing_key: resp.work_signing_key,
        rebooted_for_jobs: vec![],
    };
    dir.save(&state).map_err(AgentError::from)?;
    Ok(state)
}
