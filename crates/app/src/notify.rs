//! Wakes a device's held work request when work is queued for it.
//!
//! One `Notify` per device: `notify_one` keeps a permit when nobody waits, so work queued
//! between a device's database check and its wait is never missed. (With several server
//! replicas this becomes PostgreSQL LISTEN/NOTIFY; the interface stays.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct WorkNotifier {
    devices: Mutex<HashMap<String, Arc<Notify>>>,
}

impl WorkNotifier {
    pub fn handle(&self, device_id: &str) -> Arc<Notify> {
        let mut map = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(device_id.to_owned()).or_default().clone()
    }

    pub fn wake(&self, device_id: &str) {
        self.handle(device_id).notify_one();
    }
}
