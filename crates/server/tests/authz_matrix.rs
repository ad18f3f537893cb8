//! The authorisation matrix: every operator endpoint of the OpenAPI document the server
//! serves × every role (tenant admin, operator, approver, viewer of `acme`; the provider
//! admin; no token) × own tenant (`acme`) / other tenant (`globex`), over real HTTP, against
//! the table of expectations below. An endpoint without an expectation fails the test: a new
//! route must say who may use it.
//!
//! Also: escalation by a tenant admin, what the audit log records (and who may read it), and
//! the dashboard's actions for a viewer.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Admin,
    Operator,
    Approver,
    Viewer,
    Provider,
    Nobody,
}

const EVERYONE: [Who; 6] = [
    Who::Admin,
    Who::Operator,
    Who::Approver,
    Who::Viewer,
    Who::Provider,
    Who::Nobody,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Own,
    Other,
}

/// Which roles of the tenant may do it (the provider admin always may; nobody never).
#[derive(Debug, Clone, Copy)]
enum Need {
    View,
    Deploy,
    Operate,
    Approve,
    Remediate,
    Enroll,
    Audit,
    Admin,
    /// Deployment and SLA policies.
    Policies,
    /// Provider-level only: no tenant role is enough.
    Provider,
}

impl Need {
    fn tenant_roles(self) -> &'static [Who] {
        match self {
            Need::View => &[Who::Admin, Who::Operator, Who::Approver, Who::Viewer],
            Need::Deploy | Need::Operate | Need::Remediate | Need::Enroll | Need::Policies => {
                &[Who::Admin, Who::Operator]
            }
            Need::Approve | Need::Audit => &[Who::Admin, Who::Approver],
            Need::Admin => &[Who::Admin],
            Need::Provider => &[],
        }
    }
}

/// What the other tenant's data looks like to a tenant token that is allowed in its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtherTenant {
    /// An object of the other tenant by id: 404, as if it did not exist.
    NotFound,
    /// Naming the other tenant in a creation: 403.
    Forbidden,
    /// A list: 200, without the other tenant's data (checked: no `globex` in the body).
    Filtered,
    /// Shared, provider-level data: the same request either way.
    Shared,
}

struct Expect {
    need: Need,
    other: OtherTenant,
}

fn e(need: Need, other: OtherTenant) -> Expect {
    Expect { need, other }
}

/// The table: (method, route) → who may, and how the other tenant looks.
fn expectations() -> BTreeMap<(&'static str, &'static str), Expect> {
    use Need::*;
    use OtherTenant::*;
    BTreeMap::from([
        (("POST", "/api/v1/enroll-tokens"), e(Enroll, Forbidden)),
        (("GET", "/api/v1/enroll-tokens"), e(Enroll, Filtered)),
        (
            ("DELETE", "/api/v1/enroll-tokens/{id}"),
            e(Enroll, NotFound),
        ),
        (("GET", "/api/v1/devices"), e(View, Filtered)),
        (("GET", "/api/v1/devices/{id}"), e(View, NotFound)),
        (
            ("POST", "/api/v1/devices/{id}/reset-failures"),
            e(Remediate, NotFound),
        ),
        (("POST", "/api/v1/deployments"), e(Deploy, Forbidden)),
        (("GET", "/api/v1/deployments"), e(View, Filtered)),
        (("GET", "/api/v1/deployments/{id}"), e(View, NotFound)),
        (
            ("POST", "/api/v1/deployments/{id}/approve"),
            e(Approve, NotFound),
        ),
        (
            ("POST", "/api/v1/deployments/{id}/reject"),
            e(Approve, NotFound),
        ),
        (
            ("POST", "/api/v1/deployments/{id}/halt"),
            e(Operate, NotFound),
        ),
        (
            ("POST", "/api/v1/deployments/{id}/resume"),
            e(Operate, NotFound),
        ),
        (
            ("POST", "/api/v1/deployments/{id}/cancel"),
            e(Operate, NotFound),
        ),
        (
            ("POST", "/api/v1/deployments/{id}/preflight"),
            e(Deploy, NotFound),
        ),
        (("GET", "/api/v1/failures"), e(View, Filtered)),
        (("GET", "/api/v1/feeds"), e(View, Shared)),
        (("POST", "/api/v1/feeds"), e(Provider, Shared)),
        (("GET", "/api/v1/vulns"), e(View, Filtered)),
        (("GET", "/api/v1/vulns/{cve}"), e(View, Filtered)),
        (("GET", "/api/v1/audit"), e(Audit, NotFound)),
        (("GET", "/api/v1/users"), e(Admin, Filtered)),
        (("POST", "/api/v1/users"), e(Admin, Forbidden)),
        (
            ("POST", "/api/v1/users/{login}/disable"),
            e(Admin, NotFound),
        ),
        (("GET", "/api/v1/tokens"), e(Admin, Filtered)),
        (("POST", "/api/v1/tokens"), e(Admin, Forbidden)),
        (("DELETE", "/api/v1/tokens/{id}"), e(Admin, NotFound)),
        (("GET", "/api/v1/policies"), e(View, Filtered)),
        (("POST", "/api/v1/policies"), e(Policies, Forbidden)),
        (("GET", "/api/v1/policies/{id}"), e(View, NotFound)),
        (("PUT", "/api/v1/policies/{id}"), e(Policies, NotFound)),
        (("DELETE", "/api/v1/policies/{id}"), e(Policies, NotFound)),
        (("POST", "/api/v1/apply"), e(Policies, Forbidden)),
        (("GET", "/api/v1/rejected-updates"), e(View, Filtered)),
        (
            ("POST", "/api/v1/rejected-updates/unreject"),
            e(Approve, Forbidden),
        ),
        (("GET", "/api/v1/sla-policy"), e(View, Forbidden)),
        (("PUT", "/api/v1/sla-policy"), e(Policies, Forbidden)),
        (("GET", "/api/v1/reports/compliance"), e(View, NotFound)),
        (("POST", "/api/v1/history/snapshot"), e(Provider, Shared)),
        (
            ("PUT", "/api/v1/devices/{id}/labels"),
            e(Policies, NotFound),
        ),
        (("POST", "/api/v1/failures/assign"), e(Remediate, NotFound)),
        (("POST", "/api/v1/failures/resolve"), e(Remediate, NotFound)),
        (("POST", "/api/v1/failures/retry"), e(Deploy, NotFound)),
        (
            ("POST", "/api/v1/failures/accept-risk"),
            e(Approve, NotFound),
        ),
    ])
}

struct Ctx {
    app: App,
    s: Seeded,
    tokens: BTreeMap<Who, String>,
    n: AtomicU32,
    globex2: Agent,
}

impl Ctx {
    fn tenant(side: Side) -> &'static str {
        match side {
            Side::Own => "acme",
            Side::Other => "globex",
        }
    }
    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.n.fetch_add(1, Ordering::SeqCst))
    }
    fn device(&self, side: Side) -> &Agent {
        match side {
            Side::Own => &self.s.web1,
            Side::Other => &self.s.globex1,
        }
    }
    /// A fresh deployment waiting for approval (so each action finds one to act on). A
    /// rejection blocks the update in its tenant: lift any first.
    fn pending_deployment(&self, side: Side) -> String {
        let device = match side {
            Side::Own => &self.s.db1,
            Side::Other => &self.s.globex1,
        };
        self.app.op(
            "POST",
            "/api/v1/rejected-updates/unreject",
            Some(json!({"tenant": Ctx::tenant(side), "package": "pw-demo"})),
        );
        self.app.deploy(Ctx::tenant(side), &[device], true)
    }
    /// A new failed install of `pw-demo` on a device of the side that no reset touches
    /// (`acme-db-1`, `globex-db-1`); returns the device id.
    fn fresh_failure(&self, side: Side) -> String {
        let agent = match side {
            Side::Own => &self.s.db1,
            Side::Other => &self.globex2,
        };
        self.app.op(
            "POST",
            "/api/v1/rejected-updates/unreject",
            Some(json!({"tenant": Ctx::tenant(side), "package": "pw-demo"})),
        );
        self.app.deploy(Ctx::tenant(side), &[agent], false);
        // Reported as of now, so that it is the latest attempt whatever came before.
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("time");
        let (_, work) = agent.call("GET", "/api/v1/agent/work?wait=0", None);
        let mut reported = false;
        for item in work["items"].as_array().expect("items") {
            let job = item["job_id"].as_str().expect("job id");
            let result = json!({"started_at": now, "finished_at": now,
                "commands": ["apt-get install -y pw-demo=1.1"], "exit_code": 100,
                "duration_ms": 5, "output": "", "error": null, "boot_id": null,
                "packages": [{"package": "pw-demo", "state": "failed",
                    "class": "install_script_failed", "from_version": "1.0",
                    "to_version": "1.1", "installed_version": "1.0", "evidence": [EVIDENCE]}]});
            let (status, v) = agent.call(
                "POST",
                &format!("/api/v1/agent/jobs/{job}/result"),
                Some(result),
            );
            assert_eq!(status, 200, "{v}");
            reported = true;
        }
        assert!(reported, "the new deployment offered work");
        agent.id.clone()
    }
    /// A policy (disabled, so that the scheduler leaves it alone).
    fn policy(&self, side: Side, name: &str) -> Value {
        json!({"name": name, "tenant": Ctx::tenant(side), "enabled": false,
            "target": {"labels": {"env": "prod"}}, "what": {"kind": "security"},
            "schedule": "weekly saturday 02:00", "window_duration_secs": 7200})
    }
    /// (id, name) of a new policy.
    fn existing_policy(&self, side: Side) -> (String, String) {
        let name = self.unique(&format!("policy-{}-", Ctx::tenant(side)));
        let (status, v) = self
            .app
            .op("POST", "/api/v1/policies", Some(self.policy(side, &name)));
        assert_eq!(status, 201, "{v}");
        (v["id"].as_str().expect("policy id").to_owned(), name)
    }
    fn created(&self, path: &str, body: Value, field: &str) -> String {
        let (status, v) = self.app.op("POST", path, Some(body));
        assert_eq!(status, 201, "{path}: {v}");
        v[field].as_str().expect("created id").to_owned()
    }

    /// The concrete request for a route template on one side: (path, body).
    fn request(&self, method: &str, route: &str, side: Side) -> (String, Option<Value>) {
        let t = Ctx::tenant(side);
        let dev = &self.device(side).id;
        let path = |p: String| (p, None);
        match (method, route) {
            ("POST", "/api/v1/enroll-tokens") => {
                (route.into(), Some(json!({"tenant": t, "ttl_secs": 600})))
            }
            ("DELETE", "/api/v1/enroll-tokens/{id}") => {
                let id = self.created("/api/v1/enroll-tokens", json!({"tenant": t}), "id");
                path(format!("/api/v1/enroll-tokens/{id}"))
            }
            ("GET", "/api/v1/devices/{id}") => path(format!("/api/v1/devices/{dev}")),
            ("POST", "/api/v1/devices/{id}/reset-failures") => {
                path(format!("/api/v1/devices/{dev}/reset-failures"))
            }
            ("POST", "/api/v1/deployments") => {
                let d = match side {
                    Side::Own => &self.s.db1.id,
                    Side::Other => &self.s.globex1.id,
                };
                (
                    route.into(),
                    Some(json!({"tenant": t, "target": {"devices": [d]},
                        "selection": {"kind": "security"}, "require_approval": true})),
                )
            }
            ("GET", "/api/v1/deployments/{id}") => {
                let id = match side {
                    Side::Own => &self.s.failed_deployment,
                    Side::Other => &self.s.globex_deployment,
                };
                path(format!("/api/v1/deployments/{id}"))
            }
            ("POST", r) if r.starts_with("/api/v1/deployments/{id}/") => {
                let id = self.pending_deployment(side);
                (r.replace("{id}", &id), Some(json!({"reason": "matrix"})))
            }
            ("POST", "/api/v1/feeds") => {
                let kev = std::fs::read(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../vuln/tests/fixtures/kev.json"),
                )
                .expect("kev fixture");
                (
                    route.into(),
                    Some(json!({"kind": "cisa-kev",
                        "content_base64": base64::engine::general_purpose::STANDARD.encode(kev)})),
                )
            }
            ("GET", "/api/v1/vulns/{cve}") => path("/api/v1/vulns/CVE-2024-6387".into()),
            ("GET", "/api/v1/audit") => match side {
                Side::Own => path("/api/v1/audit".into()),
                Side::Other => path("/api/v1/audit?tenant=globex".into()),
            },
            ("POST", "/api/v1/users") => (
                route.into(),
                Some(json!({"login": self.unique("new-user-"), "role": "viewer", "tenant": t})),
            ),
            ("POST", "/api/v1/users/{login}/disable") => {
                let login = self.unique(&format!("to-disable-{t}-"));
                self.created(
                    "/api/v1/users",
                    json!({"login": login, "role": "viewer", "tenant": t}),
                    "id",
                );
                path(format!("/api/v1/users/{login}/disable"))
            }
            ("POST", "/api/v1/tokens") => (
                route.into(),
                Some(json!({"name": self.unique("new-token-"), "role": "viewer", "tenant": t})),
            ),
            ("DELETE", "/api/v1/tokens/{id}") => {
                let id = self.created(
                    "/api/v1/tokens",
                    json!({"name": self.unique("to-revoke-"), "role": "viewer", "tenant": t}),
                    "id",
                );
                path(format!("/api/v1/tokens/{id}"))
            }
            ("POST", "/api/v1/policies") => (
                route.into(),
                Some(self.policy(side, &self.unique("new-policy-"))),
            ),
            ("GET" | "DELETE", "/api/v1/policies/{id}") => {
                path(format!("/api/v1/policies/{}", self.existing_policy(side).0))
            }
            ("PUT", "/api/v1/policies/{id}") => {
                let (id, name) = self.existing_policy(side);
                (
                    format!("/api/v1/policies/{id}"),
                    Some(self.policy(side, &name)),
                )
            }
            ("POST", "/api/v1/apply") => (
                route.into(),
                Some(json!({"policies": [self.policy(side, &self.unique("applied-"))]})),
            ),
            ("POST", "/api/v1/rejected-updates/unreject") => {
                let dep = self.pending_deployment(side);
                let (status, v) = self.app.op(
                    "POST",
                    &format!("/api/v1/deployments/{dep}/reject"),
                    Some(json!({"reason": "matrix"})),
                );
                assert_eq!(status, 200, "{v}");
                (
                    route.into(),
                    Some(json!({"tenant": t, "package": "pw-demo"})),
                )
            }
            ("PUT", "/api/v1/devices/{id}/labels") => (
                format!("/api/v1/devices/{dev}/labels"),
                Some(json!({"labels": {"env": "prod"}})),
            ),
            ("POST", r) if r.starts_with("/api/v1/failures/") => {
                let device = self.fresh_failure(side);
                let until = time::OffsetDateTime::now_utc() + time::Duration::days(30);
                let until = format!(
                    "{:04}-{:02}-{:02}",
                    until.year(),
                    u8::from(until.month()),
                    until.day()
                );
                (
                    route.into(),
                    Some(
                        json!({"device": device, "package": "pw-demo", "assignee": "admin",
                        "reason": "matrix", "until": until}),
                    ),
                )
            }
            ("GET", "/api/v1/sla-policy") => path(format!("/api/v1/sla-policy?tenant={t}")),
            ("PUT", "/api/v1/sla-policy") => (
                route.into(),
                Some(json!({"tenant": t, "critical_days": 10})),
            ),
            ("GET", "/api/v1/reports/compliance") => {
                path(format!("/api/v1/reports/compliance?tenant={t}"))
            }
            (_, r) => {
                assert!(!r.contains('{'), "no request builder for {method} {r}");
                path(r.to_owned())
            }
        }
    }
}

/// Authorised: the request got past authentication and authorisation (a state conflict
/// such as halting a deployment that is not running still counts).
fn allowed(status: u16) -> bool {
    matches!(status, 200 | 201 | 204 | 409)
}

/// The operator routes of the served OpenAPI document: (method, path).
fn documented_routes(app: &App) -> Vec<(String, String)> {
    let (status, doc) = call(
        "GET",
        &format!("{}/api/v1/openapi.json", app.url),
        None,
        None,
    );
    assert_eq!(status, 200);
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if path.starts_with("/api/v1/agent/") {
            continue;
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                let operator = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x.get("operator").is_some()));
                assert!(
                    operator,
                    "{method} {path} is not marked as an operator route"
                );
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn setup() -> Ctx {
    let app = spawn_app();
    let s = seed(&app);
    // A person in the other tenant, so that "filtered" lists have something to leave out.
    app.user(
        "carol@globex.example",
        "a long password!",
        &[(Some("globex"), support_role("viewer"))],
    );
    let mut tokens = BTreeMap::new();
    for (who, role) in [
        (Who::Admin, "admin"),
        (Who::Operator, "operator"),
        (Who::Approver, "approver"),
        (Who::Viewer, "viewer"),
    ] {
        let (status, v) = app.op(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": format!("acme-{role}"), "role": role, "tenant": "acme"})),
        );
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["tenant"], "acme");
        tokens.insert(who, v["token"].as_str().expect("token").to_owned());
    }
    tokens.insert(Who::Provider, app.admin.clone());
    let globex2 = app.device("globex", "globex-db-1", true);
    Ctx {
        globex2,
        app,
        s,
        tokens,
        n: AtomicU32::new(0),
    }
}

fn support_role(r: &str) -> patchwarden_app::authz::Role {
    r.parse::<patchwarden_app::authz::Role>().expect("role")
}

#[test]
fn every_endpoint_every_role_own_and_other_tenant() {
    let ctx = setup();
    let table = expectations();
    let routes = documented_routes(&ctx.app);
    let missing: Vec<String> = routes
        .iter()
        .filter(|(m, p)| !table.contains_key(&(m.as_str(), p.as_str())))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let mut failures: Vec<String> = missing
        .iter()
        .map(|m| format!("{m}: documented, but no expectation in the authorisation matrix"))
        .collect();
    let mut checked = 0;
    for (method, route) in &routes {
        let Some(exp) = table.get(&(method.as_str(), route.as_str())) else {
            continue;
        };
        for side in [Side::Own, Side::Other] {
            for who in EVERYONE {
                let (path, body) = ctx.request(method, route, side);
                let token = ctx.tokens.get(&who).map(String::as_str);
                let (status, v) = call(method, &format!("{}{path}", ctx.app.url), token, body);
                checked += 1;
                let tenant_may = exp.need.tenant_roles().contains(&who);
                let expected: Result<(), String> = match (who, side, exp.other) {
                    (Who::Nobody, _, _) => (status == 401).then_some(()).ok_or("401".into()),
                    (Who::Provider, _, _) => allowed(status).then_some(()).ok_or("allowed".into()),
                    (_, Side::Own, _) | (_, Side::Other, OtherTenant::Shared) => {
                        if tenant_may {
                            allowed(status).then_some(()).ok_or("allowed".into())
                        } else {
                            (status == 403).then_some(()).ok_or("403".into())
                        }
                    }
                    (_, Side::Other, OtherTenant::NotFound) => {
                        (status == 404).then_some(()).ok_or("404".into())
                    }
                    (_, Side::Other, OtherTenant::Forbidden) => {
                        (status == 403).then_some(()).ok_or("403".into())
                    }
                    (_, Side::Other, OtherTenant::Filtered) => {
                        if !tenant_may {
                            (status == 403).then_some(()).ok_or("403".into())
                        } else if status != 200 {
                            Err("200".into())
                        } else if v.to_string().contains("globex") {
                            Err("no data of tenant globex".into())
                        } else {
                            Ok(())
                        }
                    }
                };
                if let Err(want) = expected {
                    failures.push(format!(
                        "{method} {route} as {who:?} ({side:?} tenant): expected {want}, got {status} {v}"
                    ));
                }
            }
        }
    }
    // Every action that went through ran a permission check (the audit middleware marks one
    // that did not).
    let (status, log) = call(
        "GET",
        &format!("{}/api/v1/audit", ctx.app.url),
        Some(&ctx.app.admin),
        None,
    );
    assert_eq!(status, 200);
    for r in log.as_array().expect("audit rows") {
        if r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no permission check"))
        {
            failures.push(format!("{} ran without a permission check", r["action"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 27 * 12, "the whole matrix ran ({checked})");
}

#[test]
fn a_tenant_admin_cannot_escalate_or_reach_other_people() {
    let ctx = setup();
    let admin = ctx.tokens[&Who::Admin].as_str();
    let url = |p: &str| format!("{}{p}", ctx.app.url);
    // Without a tenant, what a tenant admin creates lands in their own tenant.
    let (status, v) = call(
        "POST",
        &url("/api/v1/tokens"),
        Some(admin),
        Some(json!({"name": "script", "role": "admin"})),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["tenant"], "acme", "never provider level: {v}");
    let (status, v) = call(
        "POST",
        &url("/api/v1/users"),
        Some(admin),
        Some(json!({"login": "dave@acme.example", "role": "operator"})),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["roles"], json!([{"tenant": "acme", "role": "operator"}]));
    assert!(v["password"].as_str().is_some_and(|p| p.len() >= 12), "{v}");
    // The provider's own people and tokens are out of reach.
    let (status, _) = call(
        "POST",
        &url("/api/v1/users/admin/disable"),
        Some(admin),
        None,
    );
    assert_eq!(status, 404);
    let (_, tokens) = call(
        "GET",
        &url("/api/v1/tokens"),
        Some(ctx.app.admin.as_str()),
        None,
    );
    let provider_token = tokens
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["tenant"].is_null())
        .expect("the bootstrap token")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = call(
        "DELETE",
        &url(&format!("/api/v1/tokens/{provider_token}")),
        Some(admin),
        None,
    );
    assert_eq!(status, 404);
    // Someone who also holds a role elsewhere is the provider's to disable.
    ctx.app.user(
        "erin@both.example",
        "a long password!",
        &[
            (Some("acme"), support_role("viewer")),
            (Some("globex"), support_role("viewer")),
        ],
    );
    let (status, v) = call(
        "POST",
        &url("/api/v1/users/erin@both.example/disable"),
        Some(admin),
        None,
    );
    assert_eq!(status, 403, "{v}");
    // Bad input is named.
    let (status, v) = call(
        "POST",
        &url("/api/v1/tokens"),
        Some(admin),
        Some(json!({"name": "x", "role": "root"})),
    );
    assert_eq!(status, 400);
    assert!(
        v["message"].as_str().unwrap_or_default().contains("root"),
        "{v}"
    );
    let (status, v) = call(
        "POST",
        &url("/api/v1/users"),
        Some(admin),
        Some(json!({"login": "frank", "role": "viewer", "password": "short"})),
    );
    assert_eq!(status, 400, "{v}");
    // A revoked token stops working at once; a disabled user can no longer log in.
    let (_, v) = call(
        "POST",
        &url("/api/v1/tokens"),
        Some(admin),
        Some(json!({"name": "temp", "role": "viewer"})),
    );
    let (id, secret) = (
        v["id"].as_str().expect("id").to_owned(),
        v["token"].as_str().expect("token").to_owned(),
    );
    assert_eq!(
        call("GET", &url("/api/v1/devices"), Some(&secret), None).0,
        200
    );
    assert_eq!(
        call(
            "DELETE",
            &url(&format!("/api/v1/tokens/{id}")),
            Some(admin),
            None
        )
        .0,
        204
    );
    assert_eq!(
        call("GET", &url("/api/v1/devices"), Some(&secret), None).0,
        401
    );
    ctx.app.user(
        "gina@acme.example",
        "a long password!",
        &[(Some("acme"), support_role("viewer"))],
    );
    let mut web = Web::new(&ctx.app.url);
    assert_eq!(
        web.login("gina@acme.example", "a long password!").status,
        303
    );
    assert_eq!(
        call(
            "POST",
            &url("/api/v1/users/gina@acme.example/disable"),
            Some(admin),
            None
        )
        .0,
        204
    );
    assert_ne!(web.get("/").status, 200, "the session ends with the user");
}

#[test]
fn the_audit_log_records_actions_and_refusals_and_is_tenant_scoped() {
    let ctx = setup();
    let url = |p: &str| format!("{}{p}", ctx.app.url);
    let op = ctx.tokens[&Who::Operator].as_str();
    let viewer = ctx.tokens[&Who::Viewer].as_str();
    let dep = ctx.pending_deployment(Side::Own);
    let (status, _) = call(
        "POST",
        &url(&format!("/api/v1/deployments/{dep}/cancel")),
        Some(op),
        Some(json!({"reason": "wrong packages"})),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        "POST",
        &url(&format!("/api/v1/deployments/{dep}/approve")),
        Some(viewer),
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = call("GET", &url("/api/v1/devices"), Some("pwa_forged"), None);
    assert_eq!(status, 401);
    let globex_dep = ctx.pending_deployment(Side::Other);

    let (status, rows) = call(
        "GET",
        &url("/api/v1/audit"),
        Some(ctx.tokens[&Who::Approver].as_str()),
        None,
    );
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().expect("rows").clone();
    let find = |action: &str, outcome: &str| {
        rows.iter()
            .find(|r| r["action"] == action && r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} {action} in {rows:?}"))
            .clone()
    };
    let cancel = find("POST /api/v1/deployments/{id}/cancel", "ok");
    assert_eq!(cancel["actor"], "acme-operator");
    assert_eq!(cancel["actor_kind"], "token");
    assert_eq!(cancel["tenant"], "acme");
    assert_eq!(cancel["object"], dep.as_str());
    assert_eq!(cancel["detail"], "wrong packages");
    assert_eq!(cancel["via"], "api");
    assert_eq!(cancel["address"], "127.0.0.1");
    let denied = find("POST /api/v1/deployments/{id}/approve", "denied");
    assert_eq!(denied["actor"], "acme-viewer");
    assert_eq!(denied["status"], 403);
    assert!(
        denied["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("approve"),
        "{denied}"
    );
    // A creation names what it created.
    let created = rows
        .iter()
        .find(|r| r["action"] == "POST /api/v1/deployments" && r["object"] == dep.as_str());
    assert!(created.is_some(), "{rows:?}");
    // A tenant's reader sees neither the other tenant nor provider-level entries.
    assert!(rows.iter().all(|r| r["tenant"] == "acme"), "{rows:?}");
    assert!(!rows.iter().any(|r| r["object"] == globex_dep.as_str()));

    // The provider sees everything, including the unauthenticated attempt; CSV export.
    let (status, all) = call("GET", &url("/api/v1/audit"), Some(&ctx.app.admin), None);
    assert_eq!(status, 200);
    let all = all.as_array().expect("rows");
    assert!(all
        .iter()
        .any(|r| r["actor_kind"] == "anonymous" && r["status"] == 401));
    assert!(all.iter().any(|r| r["object"] == globex_dep.as_str()));
    let csv = ureq::get(&url("/api/v1/audit?format=csv&tenant=acme"))
        .set("Authorization", &format!("Bearer {}", ctx.app.admin))
        .call()
        .expect("csv");
    assert!(csv
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/csv")));
    let text = csv.into_string().expect("text");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,at,tenant,actor_kind,actor,via,action,object,detail,outcome,status,address")
    );
    assert!(text.contains(&format!(
        "acme,token,acme-operator,api,POST /api/v1/deployments/{{id}}/cancel,{dep},wrong packages,ok,200,127.0.0.1"
    )), "{text}");
    // Time filters and bad input.
    let (status, none) = call(
        "GET",
        &url("/api/v1/audit?from=2999-01-01T00:00:00Z"),
        Some(&ctx.app.admin),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(none, json!([]));
    let (status, v) = call(
        "GET",
        &url("/api/v1/audit?from=yesterday"),
        Some(&ctx.app.admin),
        None,
    );
    assert_eq!(status, 400);
    assert!(
        v["message"].as_str().unwrap_or_default().contains("from"),
        "{v}"
    );
    // Viewers and operators may not read it.
    assert_eq!(
        call("GET", &url("/api/v1/audit"), Some(viewer), None).0,
        403
    );
    assert_eq!(call("GET", &url("/api/v1/audit"), Some(op), None).0, 403);
}

#[test]
fn dashboard_actions_of_a_viewer_are_refused_and_audited() {
    let ctx = setup();
    ctx.app.user(
        "vic@acme.example",
        "a long password!",
        &[(Some("acme"), support_role("viewer"))],
    );
    ctx.app.user(
        "olga@acme.example",
        "a long password!",
        &[
            (Some("acme"), support_role("operator")),
            (Some("acme"), support_role("approver")),
        ],
    );
    let mut web = Web::new(&ctx.app.url);
    assert_eq!(
        web.login("vic@acme.example", "a long password!").status,
        303
    );
    let csrf = web.csrf();
    for action in ["approve", "reject", "halt", "resume", "cancel"] {
        let dep = ctx.pending_deployment(Side::Own);
        let page = web.post(&format!("/deployments/{dep}/{action}"), &[("csrf", &csrf)]);
        assert_eq!(page.status, 403, "{action}");
        let (_, v) = ctx
            .app
            .op("GET", &format!("/api/v1/deployments/{dep}"), None);
        assert_eq!(v["status"], "pending_approval", "{action} changed nothing");
    }
    // Starting a deployment or acting on a failure from the dashboard: refused too.
    let page = web.post(
        "/deployments/new",
        &[
            ("csrf", &csrf),
            ("tenant", "acme"),
            ("target", "all"),
            ("what", "security"),
        ],
    );
    assert_eq!(page.status, 403, "{}", page.body);
    for action in ["assign", "resolve", "retry", "accept-risk"] {
        let page = web.post(
            &format!("/failures/{action}"),
            &[
                ("csrf", &csrf),
                ("device", &ctx.s.web1.id),
                ("package", "pw-demo"),
                ("reason", "forced"),
            ],
        );
        assert_eq!(page.status, 403, "{action}: {}", page.body);
    }
    // The people and audit pages are for admins (and approvers: audit) only.
    assert_eq!(web.get("/people").status, 403);
    assert_eq!(web.get("/audit").status, 403);
    assert!(
        !web.get("/").body.contains("href=\"/audit\""),
        "no menu entry"
    );
    // Someone holding two roles in a tenant may use either (the API check agrees).
    let mut web2 = Web::new(&ctx.app.url);
    assert_eq!(
        web2.login("olga@acme.example", "a long password!").status,
        303
    );
    let csrf2 = web2.csrf();
    let dep = ctx.pending_deployment(Side::Own);
    let page = web2.post(&format!("/deployments/{dep}/approve"), &[("csrf", &csrf2)]);
    assert_eq!(page.status, 303, "{}", page.body);

    let audit = web2.get("/audit");
    assert_eq!(audit.status, 200, "an approver reads the audit log");
    assert!(
        audit.body.contains("vic@acme.example"),
        "the refusals are listed"
    );
    assert_eq!(web2.get("/people").status, 403, "but is no admin");
    let csv = web2.get("/audit?format=csv");
    assert!(csv.body.starts_with("id,at,tenant,"), "{}", csv.body);
    let mut admin = Web::new(&ctx.app.url);
    assert_eq!(admin.login("admin", &ctx.app.admin_password).status, 303);
    let people = admin.get("/people");
    assert_eq!(people.status, 200);
    assert!(people.body.contains("carol@globex.example") && people.body.contains("acme-viewer"));

    // Disable and revoke from the page; a tenant admin cannot reach another tenant's people.
    let admin_csrf = admin.csrf();
    let page = admin.post(
        "/people/users/vic@acme.example/disable",
        &[("csrf", &admin_csrf)],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    assert_ne!(web.get("/").status, 200, "vic's session ended");
    let (_, tokens) = ctx.app.op("GET", "/api/v1/tokens", None);
    let viewer_token = tokens
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["name"] == "acme-viewer")
        .expect("token")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let page = admin.post(
        &format!("/people/tokens/{viewer_token}/revoke"),
        &[("csrf", &admin_csrf)],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        call(
            "GET",
            &format!("{}/api/v1/devices", ctx.app.url),
            Some(&ctx.tokens[&Who::Viewer]),
            None
        )
        .0,
        401
    );
    ctx.app.user(
        "ted@acme.example",
        "a long password!",
        &[(Some("acme"), support_role("admin"))],
    );
    let mut ted = Web::new(&ctx.app.url);
    assert_eq!(
        ted.login("ted@acme.example", "a long password!").status,
        303
    );
    let ted_csrf = ted.csrf();
    let page = ted.post(
        "/people/users/carol@globex.example/disable",
        &[("csrf", &ted_csrf)],
    );
    assert_eq!(page.status, 404);
    let people = ted.get("/people");
    assert!(
        !people.body.contains("carol@globex.example"),
        "another tenant's people"
    );
    assert_eq!(
        web2.post(
            "/people/users/ted@acme.example/disable",
            &[("csrf", &csrf2)]
        )
        .status,
        403,
        "an approver is no admin"
    );

    let (_, rows) = ctx.app.op("GET", "/api/v1/audit?tenant=acme", None);
    let rows = rows.as_array().expect("rows");
    let web_denied = rows
        .iter()
        .filter(|r| {
            r["via"] == "web" && r["outcome"] == "denied" && r["actor"] == "vic@acme.example"
        })
        .count();
    assert_eq!(web_denied, 9, "{rows:?}");
    let (_, all) = ctx.app.op("GET", "/api/v1/audit", None);
    assert!(
        all.as_array()
            .expect("rows")
            .iter()
            .any(|r| r["action"] == "POST /deployments/new"
                && r["outcome"] == "denied"
                && r["actor"] == "vic@acme.example"),
        "{all}"
    );
    let approved = rows
        .iter()
        .find(|r| r["via"] == "web" && r["object"] == dep.as_str())
        .expect("the approval through the dashboard");
    assert_eq!(approved["actor"], "olga@acme.example");
    assert_eq!(approved["actor_kind"], "user");
    assert_eq!(approved["outcome"], "ok");
    assert_eq!(approved["action"], "POST /deployments/{id}/{action}");
}
