//! The `patchwarden` binary end to end for SLA policies: the server as a process on a random
//! loopback port, then `sla set` and `sla show` as an operator would type them. (The deadlines
//! that follow a policy are checked over HTTP in crates/server/tests/sla.rs.)

mod support;

use support::{json, ok, run, start};

#[test]
fn sla_policy_set_and_show_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _server = start(&data);

    // Set two deadlines of tenant acme; the others keep the defaults.
    let set = json(
        &data,
        &[
            "sla",
            "set",
            "--tenant",
            "acme",
            "--critical",
            "7",
            "--kev",
            "5",
            "--json",
        ],
    );
    assert_eq!(set["tenant"], "acme");
    assert_eq!(set["default"], false);
    assert_eq!(
        (&set["critical_days"], &set["kev_days"]),
        (&7.into(), &5.into())
    );
    assert_eq!(
        (&set["high_days"], &set["medium_days"], &set["low_days"]),
        (&30.into(), &90.into(), &180.into())
    );
    let table = ok(&data, &["sla", "show", "--tenant", "acme"]);
    assert!(
        table.contains("SLA policy of tenant acme (set by"),
        "{table}"
    );
    assert!(table.contains("7 days"), "{table}");
    assert!(table.contains("CISA due date, or 5 days"), "{table}");

    // Out of range: refused naming the field, nothing changed.
    for (flag, value, field) in [
        ("--high", "0", "high_days"),
        ("--low", "4000", "low_days"),
        ("--kev", "-1", "kev_days"),
    ] {
        let out = run(&data, &["sla", "set", "--tenant", "acme", flag, value]);
        assert!(!out.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field) && err.contains("3650"), "{err}");
    }
    let nothing = run(&data, &["sla", "set", "--tenant", "acme"]);
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing to change"));
    assert_eq!(
        json(&data, &["sla", "show", "--tenant", "acme", "--json"]),
        set,
        "bad input stored nothing"
    );

    // Another tenant keeps the defaults; --reset brings them back.
    let other = json(
        &data,
        &[
            "sla", "set", "--tenant", "globex", "--medium", "60", "--json",
        ],
    );
    assert_eq!(
        (&other["medium_days"], &other["critical_days"]),
        (&60.into(), &15.into())
    );
    assert_eq!(
        json(&data, &["sla", "show", "--tenant", "acme", "--json"])["critical_days"],
        7
    );
    let reset = json(
        &data,
        &["sla", "set", "--tenant", "acme", "--reset", "--json"],
    );
    assert_eq!(
        (&reset["critical_days"], &reset["kev_days"]),
        (&15.into(), &14.into())
    );
}
