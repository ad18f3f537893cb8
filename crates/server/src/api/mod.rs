//! The HTTP API: one thin handler per route. Each extracts its inputs, calls one use case of
//! `patchwarden-app`, and maps the answer (or the typed error, in `crate::error`) to HTTP.
//! The OpenAPI document is generated from these handlers' annotations.

pub mod agent;
pub mod audit;
pub mod deployments;
pub mod devices;
pub mod enrollment;
pub mod failures;
pub mod people;
pub mod policies;
pub mod reports;
pub mod vulns;
