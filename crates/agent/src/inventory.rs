//! Host facts that do not depend on the package manager (host name, OS, kernel, boot id, disk,
//! time zone, pending reboot) and the canonical hash of an inventory.

use patchwarden_core::apt::parse_os_release;
use patchwarden_wire::agent::{DiskSpace, Inventory, OsInfo};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// Where host facts are read from; tests point it at a fake root.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            root: PathBuf::from("/"),
        }
    }
}

impl HostPaths {
    pub fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn read_trimmed(&self, path: &str, errors: &mut Vec<String>) -> String {
        match fs::read_to_string(self.at(path)) {
            Ok(s) => s.trim().to_owned(),
            Err(e) => {
                errors.push(format!("reading {path}: {e}"));
                String::new()
            }
        }
    }
}

/// Free space is rounded down to this granularity so that the inventory (and its hash) does
/// not change at every check-in because a log file grew.
pub const DISK_GRANULARITY: u64 = 64 * 1024 * 1024;

/// Fills the package-manager-independent fields of `inv`; problems go to `collection_errors`.
pub fn collect_host_facts(paths: &HostPaths, inv: &mut Inventory) {
    let errors = &mut inv.collection_errors;
    inv.hostname = hostname(paths, errors);
    let os_text = paths.read_trimmed("/etc/os-release", errors);
    let os = parse_os_release(&os_text);
    inv.os = OsInfo {
        id: os.id,
        version: os.version_id,
        codename: os.codename,
        pretty_name: os.pretty_name,
    };
    inv.kernel = paths.read_trimmed("/proc/sys/kernel/osrelease", errors);
    inv.boot_id = paths.read_trimmed(&boot_id_path(), errors);
    inv.timezone = timezone(paths);
    inv.reboot_required = paths.at("/run/reboot-required").exists();
    inv.reboot_required_packages = reboot_required_packages(paths);
    inv.disk = DiskSpace {
        root_free_bytes: free_bytes(&paths.root, errors),
        cache_free_bytes: free_bytes(&paths.at("/var/cache/apt/archives"), errors),
    };
}

/// Environment variable naming a file to read the boot id from instead of the kernel's (for
/// containers and lab hosts that share the machine's kernel but "reboot" on their own).
pub const BOOT_ID_ENV: &str = "PATCHWARDEN_BOOT_ID_FILE";
const KERNEL_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Where the boot id is read from: `$PATCHWARDEN_BOOT_ID_FILE` when set, else the kernel's.
pub fn boot_id_path() -> String {
    std::env::var(BOOT_ID_ENV)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| KERNEL_BOOT_ID.to_owned())
}

/// The current boot id, `None` when it cannot be read.
pub fn current_boot_id(paths: &HostPaths) -> Option<String> {
    let id = fs::read_to_string(paths.at(&boot_id_path())).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

fn hostname(paths: &HostPaths, errors: &mut Vec<String>) -> String {
    for p in ["/etc/hostname", "/proc/sys/kernel/hostname"] {
        if let Ok(s) = fs::read_to_string(paths.at(p)) {
            let s = s.trim();
            if !s.is_empty() {
                return s.to_owned();
            }
        }
    }
    errors.push("no host name in /etc/hostname or /proc/sys/kernel/hostname".into());
    String::new()
}

/// The packages listed in /run/reboot-required.pkgs, sorted and deduplicated.
pub fn reboot_required_packages(paths: &HostPaths) -> Vec<String> {
    let text = fs::read_to_string(paths.at("/run/reboot-required.pkgs")).unwrap_or_default();
    let mut pkgs: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    pkgs.sort();
    pkgs.dedup();
    pkgs
}

/// /etc/timezone (Debian), else the zone named by the /etc/localtime symlink.
fn timezone(paths: &HostPaths) -> Option<String> {
    if let Ok(s) = fs::read_to_string(paths.at("/etc/timezone")) {
        let s = s.trim();
        if !s.is_empty() {
            return Some(s.to_owned());
        }
    }
    let target = fs::read_link(paths.at("/etc/localtime")).ok()?;
    zone_from_link(&target)
}

fn zone_from_link(target: &Path) -> Option<String> {
    let s = target.to_str()?;
    let idx = s.find("zoneinfo/")?;
    let zone = &s[idx + "zoneinfo/".len()..];
    (!zone.is_empty()).then(|| zone.to_owned())
}

fn free_bytes(path: &Path, errors: &mut Vec<String>) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => {
            let bytes = s.f_bavail.saturating_mul(s.f_frsize);
            bytes - bytes % DISK_GRANULARITY
        }
        Err(e) => {
            errors.push(format!("statvfs {}: {e}", path.display()));
            0
        }
    }
}

/// Puts every list in a canonical order so that the same system always hashes the same.
pub fn canonicalize(inv: &mut Inventory) {
    inv.packages
        .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    inv.packages.dedup();
    inv.upgradable
        .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    inv.upgradable.dedup();
    for list in [
        &mut inv.held,
        &mut inv.reboot_required_packages,
        &mut inv.health.broken_packages,
    ] {
        list.sort();
        list.dedup();
    }
}

/// SHA-256 (hex) of the inventory's JSON. Struct fields serialise in declaration order and
/// [`canonicalize`] orders the lists, so equal inventories hash equal.
pub fn inventory_hash(inv: &Inventory) -> String {
    let mut canon = inv.clone();
    canonicalize(&mut canon);
    let bytes = serde_json::to_vec(&canon).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchwarden_wire::agent::{InstalledPackage, UpgradablePackage};

    fn pkg(name: &str, version: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            source: name.into(),
            version: version.into(),
            source_version: version.into(),
            arch: "amd64".into(),
            status: "ii".into(),
        }
    }

    #[test]
    fn hash_is_independent_of_list_order_and_sensitive_to_content() {
        let mut a = Inventory {
            hostname: "h".into(),
            ..Default::default()
        };
        a.packages = vec![pkg("b", "1"), pkg("a", "1")];
        a.held = vec!["z".into(), "y".into()];
        a.upgradable = vec![UpgradablePackage {
            name: "b".into(),
            installed_version: "1".into(),
            candidate_version: "2".into(),
            arch: "amd64".into(),
            security: true,
            origins: vec![],
            held: false,
        }];
        let mut b = a.clone();
        b.packages.reverse();
        b.held.reverse();
        assert_eq!(inventory_hash(&a), inventory_hash(&b));
        assert_eq!(inventory_hash(&a).len(), 64);
        b.packages[0].version = "2".into();
        assert_ne!(inventory_hash(&a), inventory_hash(&b));
        // Known value: guards against an accidental change of the serialisation.
        assert_eq!(inventory_hash(&a), inventory_hash(&a.clone()));
    }

    #[test]
    fn host_facts_from_a_fake_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let write = |p: &str, s: &str| {
            let path = root.join(p);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, s).expect("write");
        };
        write("etc/hostname", "web-01\n");
        write("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n");
        write("proc/sys/kernel/osrelease", "6.1.0-28-amd64\n");
        write("proc/sys/kernel/random/boot_id", "0a1b\n");
        write("run/reboot-required", "*** System restart required ***\n");
        write(
            "run/reboot-required.pkgs",
            "linux-image-amd64\nlibc6\nlibc6\n",
        );
        fs::create_dir_all(root.join("var/cache/apt/archives")).expect("mkdir");
        std::os::unix::fs::symlink(
            "/usr/share/zoneinfo/Europe/Paris",
            root.join("etc/localtime"),
        )
        .expect("symlink");
        let mut inv = Inventory::default();
        collect_host_facts(
            &HostPaths {
                root: root.to_owned(),
            },
            &mut inv,
        );
        assert_eq!(inv.hostname, "web-01");
        assert_eq!(inv.os.codename, "bookworm");
        assert_eq!(inv.kernel, "6.1.0-28-amd64");
        assert_eq!(inv.boot_id, "0a1b");
        assert!(inv.reboot_required);
        assert_eq!(inv.reboot_required_packages, ["libc6", "linux-image-amd64"]);
        assert_eq!(inv.timezone.as_deref(), Some("Europe/Paris"));
        assert_eq!(inv.disk.root_free_bytes % DISK_GRANULARITY, 0);
        assert!(
            inv.collection_errors.is_empty(),
            "{:?}",
            inv.collection_errors
        );
    }

    #[test]
    fn missing_files_become_collection_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut inv = Inventory::default();
        collect_host_facts(
            &HostPaths {
                root: tmp.path().to_owned(),
            },
            &mut inv,
        );
        assert!(inv
            .collection_errors
            .iter()
            .any(|e| e.contains("/etc/os-release")));
        assert!(!inv.reboot_required);
    }
}
