//! The minimal HTTP/1.1 server shared by the status page and the metrics
//! endpoint: one accept loop, one request per connection, read-only.
//!
//! Each connection reads a request head of at most [`MAX_HEAD`] bytes (a
//! body is never read) and is answered with `Connection: close`. Only `GET`
//! and `HEAD` reach a handler; every other method is answered `405` here, so
//! no listener of edgemon can ever perform a write action. The accept loop
//! backs off (10 ms doubling to 1 s) while `accept` fails, for example when
//! the process is out of file descriptors.
//!
//! Idle and slow clients cannot hold the page shut (issue 19, item 9). The
//! accept loop never waits for a slot: every connection is accepted at once.
//! Until its head is complete a connection is only *waiting*: it has
//! [`HEAD_TIMEOUT`] to send it, and at most [`MAX_WAITING`] wait at once —
//! when another arrives, the oldest waiting one is closed, so sockets that
//! never speak are reclaimed by the next arrival instead of locking it out,
//! and holding the page shut would take a flood of new connections faster
//! than an operator's browser sends one head. A complete head is answered
//! within the request's deadline ([`Limits::request_timeout`], from accept to
//! the last byte); at most [`MAX_HANDLING`] handlers run at once (their
//! buffer reads share smol's blocking pool with the SSH collection), and a
//! handler's permit is released before the answer is written, so a client
//! that reads slowly holds only its own socket. A request past its deadline
//! is dropped, and so is its handler's future: handlers that read the buffer
//! interrupt that read when dropped (`web::cancel`), so abandoned work stops.
//!
//! It knows nothing of the routes: the handler decides what a path means.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use smol::future::FutureExt as _;

/// Largest request head accepted; a larger one is answered `431`.
pub const MAX_HEAD: usize = 16 * 1024;
/// Default deadline of one request, from accept to the last byte (`web.request_timeout`).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection has to send its whole request head (a browser sends it at once).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections still sending their head at once; the oldest is closed for a new one.
pub const MAX_WAITING: usize = 128;
/// Handlers running at once (each may read the buffer on the blocking pool).
pub const MAX_HANDLING: usize = 8;

/// What one server allows a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deadline of one request, from accept to the last byte written.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_timeout: CONNECTION_TIMEOUT,
        }
    }
}

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

/// Serves connections on `listener` with `handler` and the default [`Limits`] until the
/// future is dropped.
pub async fn serve<H, F>(listener: Async<TcpListener>, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    serve_with(listener, Limits::default(), handler).await
}

/// The connections still sending their head, oldest first; dropping a sender closes its
/// connection.
#[derive(Default)]
struct Waiting {
    next: u64,
    queue: VecDeque<(u64, smol::channel::Sender<()>)>,
}

/// Serves connections on `listener` with `handler` under `limits` until the future is dropped.
pub async fn serve_with<H, F>(listener: Async<TcpListener>, limits: Limits, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let handling = Arc::new(smol::lock::Semaphore::new(MAX_HANDLING));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let mut pause = Duration::from_millis(10);
    let mut evicted: u64 = 0;
    loop {
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
        let deadline = Instant::now() + limits.request_timeout;
        let (evict, evicted_rx) = smol::channel::bounded::<()>(1);
        let id = {
            let mut waiting = waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.queue.len() >= MAX_WAITING {
                // Dropping its sender closes the oldest idle connection.
                waiting.queue.pop_front();
                evicted += 1;
                if evicted.is_power_of_two() {
                    tracing::warn!(
                        evicted,
                        "HTTP connections that sent no request closed for new ones"
                    );
                }
            }
            let id = waiting.next;
            waiting.next += 1;
            waiting.queue.push_back((id, evict));
            id
        };
        let (handler, handling, waiting) = (handler.clone(), handling.clone(), waiting.clone());
        smol::spawn(async move {
            let mut stream = stream;
            let head_by = deadline.min(Instant::now() + HEAD_TIMEOUT);
            let head = async { Some(read_head(&mut stream).await) }
                .or(async {
                    smol::Timer::at(head_by).await;
                    None
                })
                .or(async {
                    let _ = evicted_rx.recv().await;
                    None
                })
                .await;
            waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queue
                .retain(|(other, _)| *other != id);
            let Some(Some(head)) = head else {
                return;
            };
            let answer = async {
                answer(stream, head, &handling, move |request| handler(request)).await;
            };
            answer
                .or(async {
                    smol::Timer::at(deadline).await;
                })
                .await;
        })
        .detach();
    }
}

/// Reads a request head (up to [`MAX_HEAD`] and a bit); `None` when the client closed first.
async fn read_head(stream: &mut Async<TcpStream>) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() <= MAX_HEAD {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    Some(head)
}

async fn answer<F: Future<Output = Response>>(
    mut stream: Async<TcpStream>,
    head: Vec<u8>,
    handling: &smol::lock::Semaphore,
    handler: impl FnOnce(Request) -> F,
) {
    let (method, response) = match parse_head(&head) {
        _ if head.len() > MAX_HEAD => (
            String::new(),
            Response::text(431, "request header too large\n"),
        ),
        None => (String::new(), Response::text(400, "bad request\n")),
        Some(request) if request.method == "GET" || request.method == "HEAD" => {
            // The permit covers the handler only: a client that reads slowly holds no slot.
            let permit = handling.acquire().await;
            let method = request.method.clone();
            let response = handler(request).await;
            drop(permit);
            (method, response)
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
