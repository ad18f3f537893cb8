//! The lab itself, against real hosts: needs root, mmdebstrap and overlayfs (skipped with a
//! printed reason otherwise). The first run builds the base root (about a minute).

use anyhow::{ensure, Context, Result};
use patchwarden_lab::{
    mounts_under, processes_under, require_lab, AptRepo, BaseRoot, DebPackage, Host,
};
use std::process::Output;
use std::time::{Duration, Instant};

fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> Result<Output> {
    ensure!(out.status.success(), "command failed:\n{}", text(&out));
    Ok(out)
}

fn base() -> Result<BaseRoot> {
    BaseRoot::get(&[])
}

#[test]
fn lab_base_is_cached_and_hosts_have_their_own_identity() -> Result<()> {
    require_lab!(Ok(()));
    let t = Instant::now();
    let b = base()?;
    eprintln!(
        "base root ready in {:?}: {}",
        t.elapsed(),
        b.dir().display()
    );
    let t = Instant::now();
    let again = base()?;
    ensure!(
        t.elapsed() < Duration::from_secs(1),
        "cached base took {:?}",
        t.elapsed()
    );
    assert_eq!(again.dir(), b.dir());
    ensure!(b.tarball().is_file(), "tarball kept");
    ensure!(
        !b.dir().join("etc/apt/sources.list").exists(),
        "base must not point at the internet"
    );

    let h1 = Host::create(&b, "lab-ident-one")?;
    let h2 = Host::create(&b, "lab-ident-two")?;
    let mut ids = Vec::new();
    for (h, name) in [(&h1, "lab-ident-one"), (&h2, "lab-ident-two")] {
        let out = ok(h.exec(&["hostname"])?)?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), name);
        let out = ok(h.exec(&["cat", "/etc/machine-id"])?)?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ensure!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "machine-id {id:?}"
        );
        ids.push(id);
        // PID namespace: the command is PID 1 of its own namespace.
        let out = ok(h.exec(&["sh", "-c", "echo $$"])?)?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    }
    assert_ne!(ids[0], ids[1]);
    let out = ok(h1.exec_with_env(
        &["sh", "-c", "echo $LAB_X; cat $PATCHWARDEN_BOOT_ID_FILE"],
        &[("LAB_X", "a b")],
    )?)?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("a b\n{}\n", h1.boot_id()?)
    );
    assert_ne!(h1.boot_id()?, h2.boot_id()?);

    // Files written from outside are seen inside and vice versa, and the base is untouched.
    h1.write_file("/etc/lab-note", "hello\n", 0o600)?;
    let out = ok(h1.exec(&["cat", "/etc/lab-note"])?)?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    ok(h1.exec(&["sh", "-c", "echo inside > /root/x"])?)?;
    assert_eq!(h1.read_file("/root/x")?, "inside\n");
    ensure!(!b.dir().join("etc/lab-note").exists());
    ensure!(!h2.root().join("etc/lab-note").exists());
    Ok(())
}

fn demo_repo() -> Result<AptRepo> {
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-demo", "1.0").file("/usr/share/pw-demo/VERSION", "1.0\n"))?;
    repo.add(&DebPackage::new("pw-demo", "1.1").file("/usr/share/pw-demo/VERSION", "1.1\n"))?;
    repo.add(&DebPackage::new("pw-fail", "1.0").postinst("#!/bin/sh\nexit 1\n"))?;
    repo.add(&DebPackage::new("pw-reboot", "1.0").reboot_required())?;
    repo.publish()?;
    Ok(repo)
}

#[test]
fn lab_apt_installs_and_upgrades_from_local_repo() -> Result<()> {
    require_lab!(Ok(()));
    let b = base()?;
    let repo = demo_repo()?;
    let h = Host::create(&b, "lab-apt")?;
    h.set_apt_sources(&[repo.source_line()])?;
    ok(h.exec(&["apt-get", "update"])?)?;
    assert_eq!(h.dpkg_version("pw-demo")?, None);
    ok(h.exec(&["apt-get", "install", "-y", "pw-demo=1.0"])?)?;
    let p = h.dpkg_version("pw-demo")?.context("pw-demo installed")?;
    assert_eq!((p.version.as_str(), p.status.as_str()), ("1.0", "ii"));
    ok(h.exec(&["apt-get", "install", "-y", "pw-demo=1.1"])?)?;
    let p = h.dpkg_version("pw-demo")?.context("pw-demo installed")?;
    assert_eq!((p.version.as_str(), p.status.as_str()), ("1.1", "ii"));
    assert_eq!(h.read_file("/usr/share/pw-demo/VERSION")?, "1.1\n");
    ensure!(
        repo.requests()
            .iter()
            .any(|r| r.starts_with("GET /./pw-demo_1.1_all.deb 200")
                || r.starts_with("GET /pw-demo_1.1_all.deb 200")),
        "requests: {:?}",
        repo.requests()
    );

    // Reboot flag, then a simulated reboot clears it and changes the boot id.
    ok(h.exec(&["apt-get", "install", "-y", "pw-reboot"])?)?;
    assert_eq!(h.read_file("/run/reboot-required.pkgs")?, "pw-reboot\n");
    let boot = h.boot_id()?;
    h.simulate_reboot()?;
    ensure!(!h.root().join("run/reboot-required").exists());
    ensure!(h.root().join("run/lock").is_dir(), "base /run content kept");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.root().join("run/lock"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o1777, "/run/lock mode restored");
    }
    assert_ne!(h.boot_id()?, boot);
    assert_eq!(
        h.dpkg_version("pw-reboot")?.map(|p| p.status),
        Some("ii".into())
    );
    Ok(())
}

#[test]
fn lab_failing_postinst_leaves_package_half_configured() -> Result<()> {
    require_lab!(Ok(()));
    let b = base()?;
    let repo = demo_repo()?;
    let h = Host::create(&b, "lab-fail")?;
    h.set_apt_sources(&[repo.source_line()])?;
    ok(h.exec(&["apt-get", "update"])?)?;
    let out = h.exec(&["apt-get", "install", "-y", "pw-fail"])?;
    assert_eq!(out.status.code(), Some(100), "{}", text(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        all.contains("post-installation script subprocess returned error exit status 1"),
        "{all}"
    );
    let p = h
        .dpkg_version("pw-fail")?
        .context("pw-fail known to dpkg")?;
    assert_eq!((p.version.as_str(), p.status.as_str()), ("1.0", "iF"));
    Ok(())
}

#[test]
fn lab_repository_down_and_up_again() -> Result<()> {
    require_lab!(Ok(()));
    let b = base()?;
    let mut repo = demo_repo()?;
    let port = repo.port();
    let h = Host::create(&b, "lab-repo-down")?;
    h.set_apt_sources(&[repo.source_line()])?;
    let update = ["apt-get", "update", "-o", "APT::Update::Error-Mode=any"];
    ok(h.exec(&update)?)?;

    repo.stop()?;
    let out = h.exec(&update)?;
    ensure!(!out.status.success(), "update must fail:\n{}", text(&out));
    ensure!(text(&out).contains("Connection refused"), "{}", text(&out));

    repo.start()?;
    assert_eq!(repo.port(), port, "same port after restart");
    ok(h.exec(&update)?)?;
    Ok(())
}

#[test]
fn lab_drop_leaves_no_mounts_or_processes() -> Result<()> {
    require_lab!(Ok(()));
    let b = base()?;
    let h = Host::create(&b, "lab-cleanup")?;
    let dir = h.dir().to_path_buf();
    ensure!(
        !mounts_under(&dir)?.is_empty(),
        "overlay mounted while alive"
    );
    let mut daemon = h.spawn(
        &["sh", "-c", "sleep 300 & echo started; exec sleep 301"],
        &[],
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_under(h.root()).len() < 2 {
        ensure!(
            Instant::now() < deadline,
            "daemon did not start:\n{}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(daemon.try_wait()?.is_none(), "still running");
    // A crash: everything in the namespace dies with it.
    daemon.kill()?;
    ensure!(processes_under(h.root()).is_empty(), "killed with PID 1");
    assert_eq!(std::fs::read_to_string(daemon.stdout_log())?, "started\n");

    // Something left running is killed by the host's drop.
    let _orphan = h.spawn(&["sleep", "300"], &[])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_under(h.root()).is_empty() {
        ensure!(Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(h);
    assert_eq!(mounts_under(&dir)?, Vec::<std::path::PathBuf>::new());
    ensure!(processes_under(&dir).is_empty(), "no processes left");
    ensure!(!dir.exists(), "host directory removed");
    Ok(())
}

#[test]
fn lab_hosts_do_not_pin_each_other() -> Result<()> {
    require_lab!(Ok(()));
    let b = base()?;
    let a = Host::create(&b, "lab-pin-a")?;
    let c = Host::create(&b, "lab-pin-c")?;
    // c's namespace is created while a is mounted, so it holds a copy of a's overlay mount.
    let mut daemon = c.spawn(&["sleep", "300"], &[])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_under(c.root()).is_empty() {
        ensure!(Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.write_file("/run/reboot-required", "", 0o644)?;
    a.simulate_reboot()?;
    ensure!(!a.root().join("run/reboot-required").exists());
    ok(a.exec(&["true"])?)?;
    let a_dir = a.dir().to_path_buf();
    drop(a);
    ensure!(!a_dir.exists(), "a removed while c runs");
    ensure!(daemon.try_wait()?.is_none(), "c unaffected");
    daemon.kill()?;
    Ok(())
}

#[test]
fn lab_deb_builder_composes_scripts_and_payload() -> Result<()> {
    require_lab!(Ok(()));
    let out = tempfile::tempdir()?;
    let deb = DebPackage::new("pw-big", "2:1.0-1")
        .depends("pw-demo (>= 1.0)")
        .depends("pw-other")
        .conflicts("pw-enemy")
        .slow_postinst(1)
        .reboot_required()
        .postinst("#!/bin/sh\necho custom\n")
        .size_bytes(1 << 20)
        .build(out.path())?;
    assert_eq!(
        deb.file_name().and_then(|n| n.to_str()),
        Some("pw-big_2%3a1.0-1_all.deb")
    );
    // Random payload: gzip cannot shrink it.
    ensure!(std::fs::metadata(&deb)?.len() > 1 << 20);
    let info = ok(std::process::Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .output()?)?;
    let info = String::from_utf8_lossy(&info.stdout);
    for want in [
        "Depends: pw-demo (>= 1.0), pw-other",
        "Conflicts: pw-enemy",
        "Architecture: all",
        "Version: 2:1.0-1",
    ] {
        ensure!(info.contains(want), "{want} missing in:\n{info}");
    }
    let postinst = ok(std::process::Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("postinst")
        .output()?)?;
    assert_eq!(
        String::from_utf8_lossy(&postinst.stdout),
        "#!/bin/sh\nset -e\nsleep 1\ntouch /run/reboot-required\necho pw-big >> /run/reboot-required.pkgs\necho custom\n"
    );
    Ok(())
}

#[test]
fn workspace_bin_explains_what_to_build() {
    match patchwarden_lab::workspace_bin("no-such-binary-here") {
        Ok(p) => panic!("found {}", p.display()),
        Err(err) => assert!(
            format!("{err:#}").contains("cargo build --workspace"),
            "{err:#}"
        ),
    }
}
