//! `patchwarden user …`, `patchwarden token …` and `patchwarden audit`: people, API tokens
//! and the audit log, through the operator API (only admins manage people and tokens).

use crate::output::{print_json, table};
use crate::Client;
use anyhow::Context;
use clap::Subcommand;
use patchwarden_wire::access::*;
use std::io::Read;
use std::time::{Duration, SystemTime};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a generated password once unless --password-stdin
    Create {
        login: String,
        /// admin, operator, approver or viewer
        #[arg(long)]
        role: patchwarden_core::Role,
        /// Tenant name [default: the token's tenant; for a provider token: every tenant]
        #[arg(long)]
        tenant: Option<String>,
        /// Read the password from standard input (first line)
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Users and their roles (a tenant admin sees their tenant's people)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: they can no longer log in, their sessions end at once
    Disable { login: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; it is printed once (only its hash is stored)
    Create {
        name: String,
        /// admin, operator, approver or viewer
        #[arg(long)]
        role: patchwarden_core::Role,
        /// Tenant name [default: the token's tenant; for a provider token: every tenant]
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// API tokens (never their secret)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token by id: it stops working at once
    Revoke { id: String },
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this tenant (name)
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only entries younger than this, e.g. 7d, 12h [default: everything]
    #[arg(long, value_parser = crate::parse_duration)]
    pub since: Option<Duration>,
    /// CSV instead of a table (the server's export, for spreadsheets and archives)
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    #[arg(long)]
    pub json: bool,
}

fn read_password() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let p = s.lines().next().unwrap_or_default().to_owned();
    if p.is_empty() {
        anyhow::bail!("--password-stdin: standard input held no password");
    }
    Ok(p)
}

fn roles(r: &[RoleGrant]) -> String {
    r.iter()
        .map(|g| {
            format!(
                "{} ({})",
                g.role,
                g.tenant.as_deref().unwrap_or("all tenants")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn user(client: &Client, cmd: UserCommand) -> anyhow::Result<crate::ExitCode> {
    match cmd {
        UserCommand::Create {
            login,
            role,
            tenant,
            password_stdin,
            json,
        } => {
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let created: UserCreated = client.post(
                "/api/v1/users",
                &CreateUserRequest {
                    login,
                    role: role.to_string(),
                    tenant,
                    password,
                },
            )?;
            if json {
                print_json(&created)?;
            } else {
                eprintln!("created user {} ({})", created.login, roles(&created.roles));
                if let Some(p) = &created.password {
                    eprintln!("password (shown once; give it to the person, it is not stored):");
                    println!("{p}");
                }
            }
        }
        UserCommand::List { json } => {
            let users: Vec<UserView> = client.get("/api/v1/users")?;
            if json {
                print_json(&users)?;
            } else {
                let mut t = table(&["LOGIN", "ROLES", "CREATED", "STATE"]);
                for u in &users {
                    t.add_row(vec![
                        u.login.clone(),
                        roles(&u.roles),
                        u.created_at.clone(),
                        if u.disabled { "disabled" } else { "active" }.to_owned(),
                    ]);
                }
                println!("{t}");
            }
        }
        UserCommand::Disable { login } => {
            let _: Option<serde_json::Value> = client.post(
                &format!("/api/v1/users/{}/disable", crate::encode(&login)),
                &serde_json::json!({}),
            )?;
            println!("disabled user {login}");
        }
    }
    Ok(0)
}

pub fn token(client: &Client, cmd: TokenCommand) -> anyhow::Result<crate::ExitCode> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            tenant,
            json,
        } => {
            let created: TokenCreated = client.post(
                "/api/v1/tokens",
                &CreateTokenRequest {
                    name,
                    role: role.to_string(),
                    tenant,
                },
            )?;
            if json {
                print_json(&created)?;
            } else {
                eprintln!(
                    "created API token {} {:?}: {} in {} (shown once; only its hash is stored)",
                    created.info.id,
                    created.info.name,
                    created.info.role,
                    created.info.tenant.as_deref().unwrap_or("all tenants")
                );
                println!("{}", created.token);
            }
        }
        TokenCommand::List { json } => {
            let tokens: Vec<TokenView> = client.get("/api/v1/tokens")?;
            if json {
                print_json(&tokens)?;
            } else {
                let mut t = table(&["ID", "NAME", "ROLE", "TENANT", "CREATED", "REVOKED"]);
                for k in &tokens {
                    t.add_row(vec![
                        k.id.clone(),
                        k.name.clone(),
                        k.role.to_string(),
                        k.tenant.clone().unwrap_or_else(|| "all tenants".into()),
                        k.created_at.clone(),
                        k.revoked_at.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                println!("{t}");
            }
        }
        TokenCommand::Revoke { id } => {
            client.delete(&format!("/api/v1/tokens/{}", crate::encode(&id)))?;
            println!("revoked API token {id}");
        }
    }
    Ok(0)
}

/// The query string of `GET /api/v1/audit` for these arguments at time `now`.
pub fn audit_query(args: &AuditArgs, now: SystemTime) -> String {
    let mut q = Vec::new();
    if let Some(t) = &args.tenant {
        q.push(format!("tenant={}", crate::encode(t)));
    }
    if let Some(d) = args.since {
        let from = now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH);
        q.push(format!(
            "from={}",
            crate::encode(&humantime::format_rfc3339_seconds(from).to_string())
        ));
    }
    if args.csv {
        q.push("format=csv".into());
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub fn audit(client: &Client, args: AuditArgs) -> anyhow::Result<crate::ExitCode> {
    let path = format!("/api/v1/audit{}", audit_query(&args, SystemTime::now()));
    if args.csv {
        print!("{}", client.get_text(&path)?);
        return Ok(0);
    }
    let rows: Vec<AuditEntryView> = client.get(&path)?;
    if args.json {
        print_json(&rows)?;
        return Ok(0);
    }
    let mut t = table(&[
        "AT", "TENANT", "WHO", "VIA", "ACTION", "OBJECT", "OUTCOME", "FROM", "DETAIL",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.at.clone(),
            if r.tenant.is_empty() {
                "-".into()
            } else {
                r.tenant.clone()
            },
            format!("{} {}", r.actor_kind, r.actor),
            r.via.clone(),
            r.action.clone(),
            r.object.clone().unwrap_or_else(|| "-".into()),
            format!("{} {}", r.outcome, r.status),
            r.address.clone().unwrap_or_else(|| "-".into()),
            r.detail.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_query_strings() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(8 * 86400);
        let args = AuditArgs {
            tenant: Some("acme corp".into()),
            since: Some(Duration::from_secs(7 * 86400)),
            csv: true,
            json: false,
        };
        assert_eq!(
            audit_query(&args, now),
            "?tenant=acme%20corp&from=1970-01-02T00%3A00%3A00Z&format=csv"
        );
        let none = AuditArgs {
            tenant: None,
            since: None,
            csv: false,
            json: false,
        };
        assert_eq!(audit_query(&none, now), "");
    }
}
