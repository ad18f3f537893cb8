//! The dashboard over real HTTP: login, sessions, CSRF, rate limiting, roles and tenant
//! isolation, and pages rendered from seeded data.

mod support;

use patchwarden_app::authz::Role;
use support::*;

const PW: &str = "correct horse battery staple";

#[test]
fn first_start_creates_admin_whose_password_is_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app();
    let mode = std::fs::metadata(app.data_dir.join("admin-password"))
        .expect("file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(app.admin_password.len() >= 20);
    let mut web = Web::new(&app.url);
    let page = web.get("/");
    assert_eq!(page.status, 303, "pages need a session");
    assert_eq!(page.location.as_deref(), Some("/login?next=/"));
    let page = web.login("admin", &app.admin_password);
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/"));
    let cookie = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("pw_session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    let page = web.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Where we stand"));
}

#[test]
fn secure_cookie_behind_a_tls_proxy() {
    let app = spawn_app();
    let resp = ureq::get(&format!("{}/login", app.url))
        .set("X-Forwarded-Proto", "https")
        .call()
        .expect("login form");
    let cookie = resp.header("set-cookie").unwrap_or_default().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[test]
fn bad_password_is_refused_and_failures_are_rate_limited() {
    let app = spawn_app();
    app.user("ann@example.org", PW, &[(None, Role::Viewer)]);
    let mut web = Web::new(&app.url);
    let page = web.login("ann@example.org", "wrong");
    assert_eq!(page.status, 401);
    assert!(page.body.contains("Wrong login or password"));
    assert!(!web.cookies.contains_key("pw_session"));
    let page = web.login("nobody@example.org", "wrong");
    assert_eq!(page.status, 401, "an unknown login looks the same");
    for _ in 0..4 {
        assert_eq!(web.login("ann@example.org", "wrong").status, 401);
    }
    let page = web.login("ann@example.org", PW);
    assert_eq!(
        page.status, 429,
        "even the right password waits: {}",
        page.body
    );
    assert!(page.body.contains("Too many failed logins"));
    // Another account from the same address is still allowed (per-address limit is higher).
    app.user("bob@example.org", PW, &[(None, Role::Viewer)]);
    assert_eq!(Web::new(&app.url).login("bob@example.org", PW).status, 303);
}

#[test]
fn forms_without_the_session_csrf_token_are_refused() {
    let app = spawn_app();
    let s = seed(&app);
    let mut web = Web::new(&app.url);
    assert_eq!(web.login("admin", &app.admin_password).status, 303);
    let path = format!("/deployments/{}/approve", s.pending_deployment);
    let page = web.post(&path, &[("csrf", "forged")]);
    assert_eq!(page.status, 403);
    assert!(page.body.contains("CSRF"));
    let page = web.post(&path, &[]);
    assert_eq!(page.status, 403, "missing token");
    let (_, v) = app.op(
        "GET",
        &format!("/api/v1/deployments/{}", s.pending_deployment),
        None,
    );
    assert_eq!(v["status"], "pending_approval", "nothing changed");
    // The login form is protected too (double-submit cookie).
    let page = Web::new(&app.url).post(
        "/login",
        &[
            ("login", "admin"),
            ("password", &app.admin_password),
            ("csrf", "x"),
        ],
    );
    assert_eq!(page.status, 403);
    // Logout needs the token as well.
    assert_eq!(web.post("/logout", &[("csrf", "forged")]).status, 403);
    let csrf = web.csrf();
    assert_eq!(web.post("/logout", &[("csrf", &csrf)]).status, 303);
    assert_eq!(web.get("/").status, 303, "the session is gone");
}

#[test]
fn viewer_sees_no_action_buttons_and_a_forced_action_is_refused() {
    let app = spawn_app();
    let s = seed(&app);
    app.user("viewer@acme.example", PW, &[(Some("acme"), Role::Viewer)]);
    let mut web = Web::new(&app.url);
    assert_eq!(web.login("viewer@acme.example", PW).status, 303);
    let path = format!("/deployments/{}", s.pending_deployment);
    let page = web.get(&path);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("pending_approval"));
    for button in [
        "id=\"approve\"",
        "id=\"reject\"",
        "id=\"cancel\"",
        "id=\"halt\"",
    ] {
        assert!(!page.body.contains(button), "viewer sees {button}");
    }
    let csrf = web.csrf();
    for action in ["approve", "reject", "cancel"] {
        let page = web.post(&format!("{path}/{action}"), &[("csrf", &csrf)]);
        assert_eq!(page.status, 403, "{action}: {}", page.body);
    }
    let (_, v) = app.op("GET", &format!("/api/v1{path}"), None);
    assert_eq!(v["status"], "pending_approval");
}

#[test]
fn approver_approves_and_operator_halts_but_not_the_reverse() {
    let app = spawn_app();
    let s = seed(&app);
    app.user(
        "approver@acme.example",
        PW,
        &[(Some("acme"), Role::Approver)],
    );
    app.user("ops@msp.example", PW, &[(None, Role::Operator)]);
    let path = format!("/deployments/{}", s.pending_deployment);

    let mut ops = Web::new(&app.url);
    assert_eq!(ops.login("ops@msp.example", PW).status, 303);
    let page = ops.get(&path);
    assert!(!page.body.contains("id=\"approve\""));
    assert!(page.body.contains("id=\"cancel\""), "operator may cancel");
    let csrf = ops.csrf();
    assert_eq!(
        ops.post(&format!("{path}/approve"), &[("csrf", &csrf)])
            .status,
        403
    );

    let mut appr = Web::new(&app.url);
    assert_eq!(appr.login("approver@acme.example", PW).status, 303);
    let page = appr.get(&path);
    assert!(page.body.contains("id=\"approve\"") && page.body.contains("id=\"reject\""));
    assert!(
        !page.body.contains("id=\"cancel\""),
        "approver may not cancel"
    );
    let csrf = appr.csrf();
    let page = appr.post(
        &format!("{path}/approve"),
        &[("csrf", &csrf), ("reason", "reviewed")],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some(path.as_str()));
    let (_, v) = app.op("GET", &format!("/api/v1{path}"), None);
    assert_eq!(v["status"], "running");
    assert_eq!(v["approved_by"], "approver@acme.example");
    let page = appr.post(&format!("{path}/approve"), &[("csrf", &csrf)]);
    assert_eq!(page.status, 409, "approving twice is a conflict");
    assert_eq!(
        appr.post(&format!("{path}/halt"), &[("csrf", &csrf)])
            .status,
        403
    );

    let page = ops.get(&path);
    assert!(page.body.contains("id=\"halt\""));
    let csrf = ops.csrf();
    assert_eq!(
        ops.post(&format!("{path}/halt"), &[("csrf", &csrf)]).status,
        303
    );
    let (_, v) = app.op("GET", &format!("/api/v1{path}"), None);
    assert_eq!(v["status"], "halted");
    assert!(v["status_reason"]
        .as_str()
        .unwrap_or("")
        .contains("ops@msp.example"));
}

#[test]
fn a_tenant_user_never_sees_another_tenants_data() {
    let app = spawn_app();
    let s = seed(&app);
    app.user("viewer@acme.example", PW, &[(Some("acme"), Role::Admin)]);
    let mut web = Web::new(&app.url);
    assert_eq!(web.login("viewer@acme.example", PW).status, 303);
    assert_eq!(web.get(&format!("/devices/{}", s.globex1.id)).status, 404);
    assert_eq!(web.get(&format!("/devices/{}", s.web1.id)).status, 200);
    assert_eq!(
        web.get(&format!("/deployments/{}", s.globex_deployment))
            .status,
        404
    );
    assert_eq!(
        web.get(&format!("/deployments/{}/live", s.globex_deployment))
            .status,
        404
    );
    let csrf = web.csrf();
    let page = web.post(
        &format!("/deployments/{}/cancel", s.globex_deployment),
        &[("csrf", &csrf)],
    );
    assert_eq!(
        page.status, 404,
        "even an admin of acme cannot act in globex"
    );
    for path in ["/", "/devices", "/deployments", "/failures"] {
        let page = web.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.body.contains("globex"), "{path} shows globex");
    }
    let page = web.get("/devices?q=globex");
    assert!(
        page.body.contains("No device matches"),
        "search stays in scope"
    );
    assert_eq!(web.get("/devices?tenant=globex").status, 404);
    assert!(web.get("/devices").body.contains("acme-web-1"));
}

#[test]
fn pages_render_the_seeded_estate() {
    let app = spawn_app();
    let s = seed(&app);
    let mut web = Web::new(&app.url);
    assert_eq!(web.login("admin", &app.admin_password).status, 303);

    let page = web.get("/");
    assert_eq!(page.status, 200);
    let b = &page.body;
    // 4 devices, 1 fully patched (acme-mail-1), 3 with security updates, 1 failure.
    assert!(b.contains("25 %"), "coverage: {b}");
    assert!(b.contains("1 of 4 devices fully patched"), "{b}");
    assert!(b.contains("<svg class=\"chart\""), "chart");
    assert!(b.contains("install_script_failed: 1"), "chart description");
    assert!(b.contains(">acme<") && b.contains(">globex<"), "per tenant");
    assert!(b.contains("All tenants"));

    let page = web.get("/devices?patch=security&sort=hostname&dir=desc");
    assert_eq!(page.status, 200);
    let order: Vec<usize> = ["globex-app-1", "acme-web-1", "acme-db-1"]
        .iter()
        .map(|h| page.body.find(h).unwrap_or_else(|| panic!("{h} missing")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "sorted descending");
    assert!(!page.body.contains("acme-mail-1"), "filtered");
    assert!(web.get("/devices?q=MAIL").body.contains("acme-mail-1"));
    assert_eq!(web.get("/devices?status=bogus").status, 400);

    let page = web.get(&format!("/devices/{}", s.web1.id));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("install_script_failed"));
    assert!(page
        .body
        .contains("post-installation script subprocess returned error exit status 1"));
    assert!(page.body.contains("Debian GNU/Linux 12"));
    assert!(
        page.body.contains("apt-get install -y pw-demo=1.1"),
        "attempt history"
    );

    let page = web.get("/deployments");
    assert_eq!(page.status, 200);
    for id in [
        &s.failed_deployment,
        &s.pending_deployment,
        &s.globex_deployment,
    ] {
        assert!(page.body.contains(id.as_str()));
    }
    let page = web.get(&format!("/deployments/{}", s.failed_deployment));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("acme-web-1") && page.body.contains("st-failed"));
    let page = web.get(&format!("/deployments/{}", s.globex_deployment));
    assert!(
        page.body.contains("data-live-url"),
        "a running deployment updates live"
    );

    let page = web.get("/failures");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("install_script_failed") && page.body.contains("a maintainer script")
    );
    assert!(page.body.contains("returned error exit status 1"));
    let page = web.get("/failures?class=lock_held");
    assert!(page.body.contains("0 current failure"));

    // Static assets and headers.
    let css = web.get("/static/app.css");
    assert_eq!(css.status, 200);
    assert!(css.body.contains(".kpi"));
    let page = ureq::get(&format!("{}/login", app.url))
        .call()
        .expect("login");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // The API keeps working with bearer tokens.
    let (status, v) = app.op("GET", "/api/v1/devices", None);
    assert_eq!(status, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(4));
    let (status, _) = call("GET", &format!("{}/api/v1/devices", app.url), None, None);
    assert_eq!(status, 401, "a session cookie is not an API credential");
    drop(s);
}

#[test]
fn the_live_fragment_follows_results() {
    let app = spawn_app();
    let s = seed(&app);
    let mut web = Web::new(&app.url);
    assert_eq!(web.login("admin", &app.admin_password).status, 303);
    let live = format!("/deployments/{}/live", s.globex_deployment);
    let before = web.get(&live);
    assert_eq!(before.status, 200);
    assert!(
        before.body.contains("0 of 1 devices done"),
        "{}",
        before.body
    );
    assert!(s
        .globex1
        .report(patchwarden_wire::PackageState::Verified, None, &[]));
    let after = web.get(&live);
    assert!(after.body.contains("1 of 1 devices done"), "{}", after.body);
    assert!(
        after.body.contains("data-final"),
        "completed: polling stops"
    );
}
