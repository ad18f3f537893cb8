//! Starting a deployment from the dashboard: the form is shown to people who may deploy (in
//! the tenants where they may), creates the same deployment the API would, refuses a viewer's
//! forced post and a missing CSRF token, and explains bad input.

mod support;

use patchwarden_app::authz::Role;
use support::*;

const PW: &str = "correct horse battery staple";

#[test]
fn a_deployment_started_from_the_dashboard() {
    let app = spawn_app();
    let web1 = app.device("acme", "acme-web-1", true);
    let _web2 = app.device("acme", "acme-web-2", true);
    app.device("globex", "globex-app-1", true);
    app.user("ops@acme.example", PW, &[(Some("acme"), Role::Operator)]);
    app.user("view@acme.example", PW, &[(Some("acme"), Role::Viewer)]);

    let mut web = Web::new(&app.url);
    assert_eq!(web.login("ops@acme.example", PW).status, 303);
    let page = web.get("/deployments");
    assert!(
        page.body.contains("id=\"new-deployment\""),
        "the form is shown to an operator"
    );
    assert!(page.body.contains(">acme</option>"), "{}", page.body);
    assert!(
        !page.body.contains(">globex</option>"),
        "only the tenants where they may deploy"
    );
    let tenant = hidden_option(&page.body, "acme");
    let csrf = web.csrf();

    // Bad input: a clear message, nothing created.
    let page = web.post(
        "/deployments/new",
        &[
            ("csrf", &csrf),
            ("tenant", &tenant),
            ("target", "label"),
            ("label", "env"),
            ("what", "security"),
        ],
    );
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("key=value"), "{}", page.body);
    let page = web.post(
        "/deployments/new",
        &[
            ("csrf", &csrf),
            ("tenant", &tenant),
            ("target", "all"),
            ("what", "security"),
            ("window", "every full moon"),
        ],
    );
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("not created"), "{}", page.body);
    let (_, list) = app.op("GET", "/api/v1/deployments", None);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    // Without the CSRF token: refused.
    let page = web.post(
        "/deployments/new",
        &[("tenant", &tenant), ("target", "all"), ("what", "security")],
    );
    assert_eq!(page.status, 403, "{}", page.body);

    // A good one: two rings, approval required; the page of the new deployment follows.
    let page = web.post(
        "/deployments/new",
        &[
            ("csrf", &csrf),
            ("tenant", &tenant),
            ("target", "devices"),
            ("devices", "acme-web-1, acme-web-2"),
            ("what", "security"),
            ("pilot_percent", "50"),
            ("halt_percent", "30"),
            ("require_approval", "1"),
        ],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    let id = page
        .location
        .clone()
        .expect("present")
        .trim_start_matches("/deployments/")
        .to_owned();
    let (status, v) = app.op("GET", &format!("/api/v1/deployments/{id}"), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "pending_approval", "{v}");
    assert_eq!(v["devices_total"], 2, "{v}");
    assert_eq!(v["rings"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["tenant"], "acme");
    let (_, work) = web1.call("GET", "/api/v1/agent/work?wait=0", None);
    assert_eq!(work["items"], serde_json::json!([]), "waits for approval");
    let page = web.get(&format!("/deployments/{id}"));
    assert_eq!(page.status, 200);

    // A viewer sees no form, and a forced post is refused.
    let mut viewer = Web::new(&app.url);
    assert_eq!(viewer.login("view@acme.example", PW).status, 303);
    let page = viewer.get("/deployments");
    assert!(
        !page.body.contains("id=\"new-deployment\""),
        "no form for a viewer"
    );
    let csrf = viewer.csrf();
    let page = viewer.post(
        "/deployments/new",
        &[
            ("csrf", &csrf),
            ("tenant", &tenant),
            ("target", "all"),
            ("what", "security"),
        ],
    );
    assert_eq!(page.status, 403, "{}", page.body);
    let (_, list) = app.op("GET", "/api/v1/deployments", None);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

/// The value of the `<option>` whose text is `name`.
fn hidden_option(html: &str, name: &str) -> String {
    let end = html.find(&format!(">{name}</option>")).expect("option");
    let start = html[..end].rfind("value=\"").expect("value") + "value=\"".len();
    html[start..html[start..].find('"').expect("present") + start].to_owned()
}
