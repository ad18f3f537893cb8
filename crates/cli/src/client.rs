//! A small blocking client for the operator API: finds the server and the credential from
//! flags, environment, or the local server's data directory.

use anyhow::{anyhow, Context};
use patchwarden_wire::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

impl Client {
    /// URL: flag/env, else the local server's `server-url` file, else 127.0.0.1:8080.
    /// Token: flag/env, else the local server's `admin-token` file.
    pub fn discover(
        url: Option<&str>,
        token: Option<&str>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let read = |name: &str| {
            std::fs::read_to_string(data_dir.join(name))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let base = match url {
            Some(u) => u.to_owned(),
            None => read("server-url").unwrap_or_else(|| DEFAULT_URL.to_owned()),
        };
        let token = match token {
            Some(t) => t.to_owned(),
            None => read("admin-token").ok_or_else(|| {
                anyhow!(
                    "no API token: pass --token or set PATCHWARDEN_TOKEN, or run as a user who can read {} \
                     (written by a local `patchwarden server`)",
                    data_dir.join("admin-token").display()
                )
            })?,
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
        })
    }

    fn handle<T: DeserializeOwned>(
        &self,
        what: &str,
        r: Result<ureq::Response, ureq::Error>,
    ) -> anyhow::Result<T> {
        match r {
            Ok(resp) => {
                if resp.status() == 204 {
                    return serde_json::from_str("null").context("empty response");
                }
                resp.into_json()
                    .with_context(|| format!("{what}: reading the response"))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                match serde_json::from_str::<ErrorBody>(&body) {
                    Ok(e) => Err(anyhow!("{what}: {} ({code} {})", e.message, e.error)),
                    Err(_) => Err(anyhow!("{what}: HTTP {code}: {body}")),
                }
            }
            Err(e) => Err(anyhow!(
                "{what}: cannot reach the server at {}: {e}",
                self.base
            )),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call();
        self.handle(&format!("GET {path}"), r)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .send_json(body);
        self.handle(&format!("POST {path}"), r)
    }

    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let r = self
            .agent
            .put(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .send_json(body);
        self.handle(&format!("PUT {path}"), r)
    }

    /// A GET whose answer is text (e.g. CSV), returned as is.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let what = format!("GET {path}");
        match self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call()
        {
            Ok(resp) => resp
                .into_string()
                .with_context(|| format!("{what}: reading the response")),
            Err(e) => self.handle::<()>(&what, Err(e)).map(|()| String::new()),
        }
    }

    /// A GET whose answer is bytes (e.g. a PDF), returned as is, at most 256 MiB.
    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let what = format!("GET {path}");
        match self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call()
        {
            Ok(resp) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(resp.into_reader(), 256 << 20),
                    &mut bytes,
                )
                .with_context(|| format!("{what}: reading the response"))?;
                Ok(bytes)
            }
            Err(e) => self.handle::<()>(&what, Err(e)).map(|()| Vec::new()),
        }
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        let r = self
            .agent
            .delete(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call();
        self.handle::<Option<serde_json::Value>>(&format!("DELETE {path}"), r)
            .map(|_| ())
    }
}
