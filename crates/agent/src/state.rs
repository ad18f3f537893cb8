//! The agent's durable state: its identity (`state.json`) and the results it still owes the
//! server (`outbox/`), plus markers of jobs it already finished (`done/`). Every file is
//! written atomically (temporary file, fsync, rename) and readable by root only. Outbox and
//! done files are named by [`WorkId`], whose alphabet makes them safe file names.

use patchwarden_wire::agent::JobResult;
use patchwarden_wire::WorkId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/patchwarden-agent";
const STATE_FILE: &str = "state.json";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
/// `done/` markers older than this are pruned; the server stops re-offering long before.
const DONE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not valid agent state: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The identity and settings obtained at enrollment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub server_url: String,
    pub device_id: String,
    pub device_secret: String,
    pub tenant: String,
    pub checkin_interval_secs: u64,
    /// Hash of the last inventory the server accepted.
    #[serde(default)]
    pub last_acked_inventory_hash: Option<String>,
    #[serde(default)]
    pub work_signing_key: Option<String>,
    /// Jobs after which this agent rebooted the device (newest last, bounded): never twice
    /// for one job.
    #[serde(default)]
    pub rebooted_for_jobs: Vec<String>,
}

// The secret must never reach a log line.
impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("server_url", &self.server_url)
            .field("device_id", &self.device_id)
            .field("device_secret", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("checkin_interval_secs", &self.checkin_interval_secs)
            .field("last_acked_inventory_hash", &self.last_acked_inventory_hash)
            .finish()
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the directory and its `outbox/` and `done/`, mode 0700.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StateError> {
        let root = root.into();
        for dir in [root.clone(), root.join("outbox"), root.join("done")] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_err(&dir))?;
        }
        Ok(StateDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `None` when the agent has not enrolled yet.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let path = self.root.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    pub fn save(&self, state: &State) -> Result<(), StateError> {
        write_json(&self.root.join(STATE_FILE), state)
    }

    /// Persists a result before it is uploaded.
    pub fn outbox_put(&self, work_id: &WorkId, result: &JobResult) -> Result<(), StateError> {
        write_json(&self.outbox_path(work_id), result)
    }

    /// Results still to upload, oldest work id first (ids sort by name; order does not matter
    /// for correctness). A file whose name is not a work id is left alone (and logged).
    pub fn outbox_pending(&self) -> Result<Vec<(WorkId, JobResult)>, StateError> {
        let dir = self.root.join("outbox");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue; // temporary files of an interrupted write
            };
            let id = match WorkId::parse(id) {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "not a result file; left in the outbox");
                    continue;
                }
            };
            if let Some(result) = read_json(&path)? {
                out.push((id, result));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The server acknowledged the result: keep it as a `done/` marker, drop it from the outbox.
    pub fn outbox_acked(&self, work_id: &WorkId) -> Result<(), StateError> {
        let from = self.outbox_path(work_id);
        let to = self.done_path(work_id);
        fs::rename(&from, &to)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io_err(&from))?;
        sync_dir(&self.root.join("done"));
        Ok(())
    }

    /// The result of a job this agent already ran (whether or not the server has it yet), so
    /// a job offered again after a crash or a lost acknowledgement is re-sent, never re-run.
    pub fn known_result(&self, work_id: &WorkId) -> Result<Option<JobResult>, StateError> {
        if let Some(r) = read_json(&self.outbox_path(work_id))? {
            return Ok(Some(r));
        }
        read_json(&self.done_path(work_id))
    }

    /// Removes `done/` markers older than the retention period.
    pub fn prune_done(&self) {
        let dir = self.root.join("done");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > DONE_RETENTION);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn outbox_path(&self, work_id: &WorkId) -> PathBuf {
        self.root.join("outbox").join(format!("{work_id}.json"))
    }

    fn done_path(&self, work_id: &WorkId) -> PathBuf {
        self.root.join("done").join(format!("{work_id}.json"))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| StateError::Corrupt {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Io {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    write_atomic(path, &bytes).map_err(io_err(path))
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchwarden_wire::agent::JobResult;

    fn state() -> State {
        State {
            server_url: "http://127.0.0.1:8080".into(),
            device_id: "dev-1".into(),
            device_secret: "s3cret-value".into(),
            tenant: "acme".into(),
            checkin_interval_secs: 60,
            last_acked_inventory_hash: None,
            work_signing_key: None,
            rebooted_for_jobs: vec![],
        }
    }

    fn result() -> JobResult {
        JobResult {
            started_at: "2026-11-25T10:00:00Z".into(),
            finished_at: "2026-11-25T10:00:01Z".into(),
            commands: vec!["apt-get update".into()],
            exit_code: Some(0),
            duration_ms: 1000,
            output: "ok".into(),
            packages: vec![],
            error: None,
            boot_id: None,
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn state_round_trips_with_private_permissions() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path().join("agent")).expect("open");
        assert_eq!(dir.load().expect("load"), None);
        dir.save(&state()).expect("save");
        assert_eq!(dir.load().expect("load"), Some(state()));
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join("state.json")), 0o600);
        assert_eq!(mode(&dir.path().join("outbox")), 0o700);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let s = format!("{:?}", state());
        assert!(!s.contains("s3cret"), "{s}");
        assert!(s.contains("dev-1"));
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("open");
        fs::write(tmp.path().join("state.json"), b"{not json").expect("write");
        assert!(matches!(dir.load(), Err(StateError::Corrupt { .. })));
    }

    fn id(s: &str) -> WorkId {
        WorkId::parse(s).expect("work id")
    }

    fn pending_ids(dir: &StateDir) -> Vec<String> {
        dir.outbox_pending()
            .expect("pending")
            .into_iter()
            .map(|(id, _)| id.to_string())
            .collect()
    }

    #[test]
    fn outbox_then_ack_then_known() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("open");
        assert_eq!(dir.known_result(&id("job_1")).expect("known"), None);
        dir.outbox_put(&id("job_1"), &result()).expect("put");
        dir.outbox_put(&id("job_2"), &result()).expect("put");
        assert_eq!(mode(&tmp.path().join("outbox/job_1.json")), 0o600);
        assert_eq!(pending_ids(&dir), ["job_1", "job_2"]);
        assert_eq!(
            dir.known_result(&id("job_1")).expect("known"),
            Some(result())
        );
        dir.outbox_acked(&id("job_1")).expect("ack");
        dir.outbox_acked(&id("job_1"))
            .expect("a second ack is harmless");
        assert_eq!(pending_ids(&dir), ["job_2"]);
        // Still known after the ack: a re-offered job is answered from `done/`, not re-run.
        assert_eq!(
            dir.known_result(&id("job_1")).expect("known"),
            Some(result())
        );
        // A reopened directory sees the same thing (what survives a restart).
        let again = StateDir::open(tmp.path()).expect("reopen");
        assert_eq!(again.outbox_pending().expect("pending").len(), 1);
    }

    #[test]
    fn every_attempt_of_a_job_has_its_own_result() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("open");
        dir.outbox_put(&id("job_1"), &result()).expect("put");
        dir.outbox_acked(&id("job_1")).expect("ack");
        // The retry is not answered with the first attempt's result: it must run.
        assert_eq!(dir.known_result(&id("job_1~2")).expect("known"), None);
        dir.outbox_put(&id("job_1~2"), &result()).expect("put");
        dir.outbox_put(&id("pf_job_1"), &result()).expect("put");
        assert_eq!(pending_ids(&dir), ["job_1~2", "pf_job_1"]);
        assert!(tmp.path().join("outbox/job_1~2.json").is_file());
    }

    #[test]
    fn files_that_are_not_work_ids_stay_out_of_the_upload() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("open");
        dir.outbox_put(&id("job_1"), &result()).expect("put");
        fs::write(tmp.path().join("outbox/not an id.json"), b"{}").expect("write");
        assert_eq!(pending_ids(&dir), ["job_1"]);
    }
}
