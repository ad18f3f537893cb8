//! Wire types of the agent protocol and the operator API, versioned by [`PROTOCOL_VERSION`].
//!
//! Compatibility rules: fields are only ever added (with `#[serde(default)]`), never renamed or
//! removed within a major protocol version; readers ignore fields they do not know; enums that
//! may grow carry an `Unknown`/`Unsupported` fallback. Timestamps are RFC 3339 strings in UTC.

pub mod access;
pub mod agent;
pub mod api;
pub mod report;
pub mod work_id;

pub use work_id::WorkId;

pub use patchwarden_core::{FailureClass, PackageState};

/// The protocol version this build speaks. The server accepts agents at or below it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Base path of every HTTP route.
pub const API_PREFIX: &str = "/api/v1";

/// Most bytes of command output an agent sends for one job (head and tail are kept).
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Most evidence lines attached to one package result.
pub const MAX_EVIDENCE_LINES: usize = 20;

/// An error body, as every non-2xx response carries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_token`, `not_found`, `bad_request`.
    pub error: String,
    /// A sentence for people, naming what was wrong.
    pub message: String,
    /// For an invalid request: the input that was wrong (e.g. `ttl_secs`, `rings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Keeps at most `max` bytes of `s`: the head and the tail, with a marker of what was cut.
pub fn bound_output(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let half = max / 2;
    let mut head_end = half;
    while !s.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = s.len() - half;
    while !s.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!(
        "{}\n[... {} bytes cut ...]\n{}",
        &s[..head_end],
        tail_start - head_end,
        &s[tail_start..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_output_keeps_head_and_tail() {
        let s = format!("{}{}", "a".repeat(100), "é".repeat(100));
        let b = bound_output(&s, 50);
        assert!(b.starts_with("aaaa"));
        assert!(b.ends_with("éé"));
        assert!(b.contains("bytes cut"));
        assert_eq!(bound_output("short", 50), "short");
    }
}
