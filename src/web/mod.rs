//! The status page and its JSON API (`[web] listen`): the only module that
//! serves HTTP. `http.rs` is the small HTTP/1.1 server (one accept loop,
//! shared with the metrics endpoint), `api.rs` builds the JSON replies, and
//! `assets/` holds the page: HTML, CSS and a small hand-written script that
//! fetches the API and draws the charts as SVG. Everything the page needs is
//! served from here; it loads nothing from the internet.
//!
//! Invariants: the page never writes — only `GET` and `HEAD` are answered
//! (`405` otherwise) and every read goes through a read-only buffer
//! connection opened per request on the blocking pool, which in WAL mode
//! never blocks the daemon's writer. When a password is configured (always
//! when listening off loopback; `config check` refuses that without one),
//! every request needs HTTP basic auth with it, compared in constant time.
//! Host-provided text reaches the browser only as JSON and is put into the
//! page with `textContent`, never as markup; the Content-Security-Policy
//! allows no inline script.

pub mod api;
pub mod cancel;
pub mod http;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::buffer::StatusReader;
use crate::config::Config;
use crate::config::secret::Secret;
use http::{Request, Response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

const JSON: &str = "application/json";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The site behind the listener: what it reads and who may read it.
#[derive(Debug, Clone)]
pub struct Site {
    /// The resolved appliance id (`crate::identity`), shown in the page's title.
    pub appliance: String,
    /// `collect.interval`: the page refreshes at this pace.
    pub interval: Duration,
    /// The SQLite buffer, opened read-only per request.
    pub buffer_path: PathBuf,
    /// The basic-auth password, when one is required.
    pub password: Option<Secret>,
    /// Recurring silences of the configuration, shown with the CLI's.
    pub weekly: Vec<crate::config::WeeklySilence>,
}

impl Site {
    /// The site of `config`, whose appliance id resolved to `appliance`.
    pub fn new(config: &Config, appliance: &str) -> Site {
        Site {
            appliance: appliance.to_string(),
            interval: config.collect.interval,
            buffer_path: config.buffer.path.clone(),
            password: config.web.password.clone(),
            weekly: config.silences.clone(),
        }
    }

    /// Whether `request` may see the site: always without a password, else
    /// only with basic-auth credentials carrying it (any user name).
    pub fn authorized(&self, request: &Request) -> bool {
        let Some(password) = &self.password else {
            return true;
        };
        let given = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|raw| {
                let colon = raw.iter().position(|&b| b == b':')?;
                Some(raw[colon + 1..].to_vec())
            });
        given.is_some_and(|given| same_secret(&given, password.expose().as_bytes()))
    }

    /// Answers one request (blocking: reads the buffer).
    pub fn respond(&self, request: &Request) -> Response {
        self.respond_until(request, &cancel::ReadCancel::never())
    }

    /// Answers one request (blocking: reads the buffer), stopping its read when `cancel`
    /// fires: the request was abandoned at its deadline.
    pub fn respond_until(&self, request: &Request, cancel: &cancel::ReadCancel) -> Response {
        if !self.authorized(request) {
            return Response::text(401, "authentication required\n").with_header(
                "WWW-Authenticate",
                "Basic realm=\"edgemon\", charset=\"UTF-8\"",
            );
        }
        let response = match request.path.as_str() {
            "/" | "/index.html" => Response::new(200, "text/html; charset=utf-8", INDEX_HTML)
                .with_header("Content-Security-Policy", CSP),
            "/app.js" => Response::new(200, "text/javascript; charset=utf-8", APP_JS),
            "/style.css" => Response::new(200, "text/css; charset=utf-8", STYLE_CSS),
            "/favicon.svg" => Response::new(200, "image/svg+xml", FAVICON_SVG),
            path if path.starts_with("/api/") => self.api(request, cancel),
            _ => Response::text(404, "not found\n"),
        };
        response
            .with_header("Cache-Control", "no-store")
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Referrer-Policy", "no-referrer")
    }

    fn api(&self, request: &Request, cancel: &cancel::ReadCancel) -> Response {
        let context = api::Context {
            appliance: self.appliance.clone(),
            interval: self.interval,
            now: crate::buffer::now_ms(),
            weekly: self.weekly.clone(),
        };
        let reply = StatusReader::open(&self.buffer_path)
            .map_err(api::ApiError::from)
            .and_then(|buffer| {
                if cancel.watch(buffer.conn()) {
                    Ok(buffer)
                } else {
                    Err(api::ApiError::Abandoned)
                }
            })
            .and_then(|buffer| match request.path.as_str() {
                "/api/status" => api::status(&buffer, &context),
                "/api/hosts" => api::hosts(&buffer, &context),
                path => match sample_path_host(path) {
                    Some(Some(host)) => api::samples(
                        &buffer,
                        &context,
                        &host,
                        request.query_param("since").as_deref(),
                        request.query_param("until").as_deref(),
                    ),
                    Some(None) => Err(api::ApiError::BadRequest(
                        "the host name is not valid percent-encoded UTF-8".into(),
                    )),
                    None => Err(api::ApiError::NoSuchPath),
                },
            });
        if reply.is_err() && cancel.cancelled() {
            tracing::info!(path = %request.path,
                "request abandoned at its deadline: its buffer read was interrupted");
        }
        match reply {
            Ok(body) => Response::new(200, JSON, body),
            Err(error) => {
                let status = match error {
                    api::ApiError::BadRequest(_) => 400,
                    api::ApiError::UnknownHost(_) | api::ApiError::NoSuchPath => 404,
                    api::ApiError::Buffer(_) | api::ApiError::Abandoned => 503,
                };
                Response::new(status, JSON, api::error(&error.to_string()))
            }
        }
    }
}

/// The host of `/api/hosts/NAME/samples`: `None` for another path,
/// `Some(None)` when NAME does not decode.
fn sample_path_host(path: &str) -> Option<Option<String>> {
    let name = path.strip_prefix("/api/hosts/")?.strip_suffix("/samples")?;
    Some(http::percent_decode(name).filter(|n| !n.is_empty()))
}

/// Constant-time equality of two secrets of any lengths: their SHA-256
/// digests are compared byte by byte without an early exit.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Binds `[web] listen` (when set) and serves the site of appliance `appliance` on the executor until
/// the returned task is dropped.
pub fn start(config: &Config, appliance: &str) -> anyhow::Result<Option<smol::Task<()>>> {
    let Some(listen) = config.web.listen else {
        return Ok(None);
    };
    let listener = http::bind(listen)
        .with_context(|| format!("binding the status page on {listen} ([web] listen)"))?;
    let site = Arc::new(Site::new(config, appliance));
    tracing::info!(%listen, auth = site.password.is_some(), "status page listening");
    let limits = http::Limits {
        request_timeout: config.web.request_timeout,
    };
    Ok(Some(smol::spawn(http::serve_with(
        listener,
        limits,
        move |request| {
            let site = site.clone();
            async move {
                // Dropped with this future, finished or abandoned: stops a read still running.
                let (_guard, cancel) = cancel::pair();
                smol::unblock(move || site.respond_until(&request, &cancel)).await
            }
        },
    ))))
}
