//! The minimal HTTP/1.1 server shared by the status page and the metrics
//! endpoint: one accept loop, one request per connection, read-only.
//!
//! Each connection reads a request head of at most [`MAX_HEAD`] bytes (a
//! body is never read), gets [`CONNECTION_TIMEOUT`] for the whole exchange,
//! and is answered with `Connection: close`. Only `GET` and `HEAD` reach a
//! handler; every other method is answered `405` here, so no listener of
//! edgemon can ever perform a write action. At most [`MAX_CONNECTIONS`] are
//! served at once; the accept loop waits for a free slot before taking more,
//! and backs off (10 ms doubling to 1 s) while `accept` fails, for example
//! when the process is out of file descriptors.
//!
//! It knows nothing of the routes: the handler decides what a path means.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

/// Largest request head accepted; a larger one is answered `431`.
pub const MAX_HEAD: usize = 16 * 1024;
/// Time for reading a request and writing its response.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD` (nothing else reaches a handler).
    pub method: String,
    /// The path, still percent-encoded, without the query.
    pub path: String,
    /// The query after `?`, still percent-encoded; empty when absent.
    pub query: String,
    /// Header names in lower case, with their values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The percent-decoded value of the query parameter `name`, if present.
    /// `+` stays a plus sign (RFC 3339 offsets are written with it).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key)? == name).then(|| percent_decode(value))?
        })
    }
}

/// A response; `HEAD` requests get its head only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// Binds `listen` now, so that a taken port is an error at start-up, not later.
pub fn bind(listen: SocketAddr) -> std::io::Result<Async<TcpListener>> {
    Async::<TcpListener>::bind(listen)
}

/// Serves connections on `listener` with `handler` until the future is dropped.
pub async fn serve<H, F>(listener: Async<TcpListener>, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(smol::lock::Semaphore::new(MAX_CONNECTIONS));
    let mut pause = Duration::from_millis(10);
    loop {
        let slot = slots.acquire_arc().await;
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                pause = Duration::from_millis(10);
                stream
            }
            Err(error) => {
                if pause == Duration::from_millis(10) {
                    tracing::warn!(%error, "accepting an HTTP connection failed; backing off");
                }
                smol::Timer::after(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let handler = handler.clone();
        smol::spawn(async move {
            let exchange = exchange(stream, move |request| handler(request));
            smol::future::or(exchange, async {
                smol::Timer::after(CONNECTION_TIMEOUT).await;
            })
            .await;
            drop(slot);
        })
        .detach();
    }
}

async fn exchange<F: Future<Output = Response>>(
    mut stream: Async<TcpStream>,
    handler: impl FnOnce(Request) -> F,
) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() <= MAX_HEAD {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let (method, response) = match parse_head(&head) {
        _ if head.len() > MAX_HEAD => (
            String::new(),
            Response::text(431, "request header too large\n"),
        ),
        None => (String::new(), Response::text(400, "bad request\n")),
        Some(request) if request.method == "GET" || request.method == "HEAD" => {
            (request.method.clone(), handler(request).await)
        }
        Some(request) => (
            request.method,
            Response::text(405, "read-only: only GET and HEAD\n").with_header("Allow", "GET, HEAD"),
        ),
    };
    let _ = stream.write_all(&render_head(&response)).await;
    if method != "HEAD" {
        let _ = stream.write_all(&response.body).await;
    }
    let _ = stream.flush().await;
}

/// Parses a request head (`METHOD TARGET HTTP/1.x` and header lines).
pub fn parse_head(head: &[u8]) -> Option<Request> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if first.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    })
}

fn render_head(response: &Response) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Decodes `%XX` escapes; `None` when one is malformed or the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
