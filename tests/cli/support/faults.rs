//! [`FaultProxy`]: an HTTP/1.1 proxy in front of a plain-HTTP registry that
//! injects network and server faults into chosen requests, and logs every
//! request with what it answered.
//!
//! Faults are [`Rule`]s: a kind of request ([`Kind`]), optionally narrowed to
//! paths holding one of some strings (a blob digest, a repository), and how
//! many matching attempts get the fault — the first N (counted over all
//! matches, or per path), or every one. A request no rule takes is forwarded
//! as is, `Range` included, so a client's retry or resume reaches the real
//! registry. Forwarding (and what is dropped) is [`send_upstream`]'s.
//!
//! A [`Fault::Hold`] stops an answer part-way and keeps the connection open,
//! so that a test can kill the client at a chosen point: requests are logged
//! as they arrive, [`FaultProxy::wait_until_held`] returns once a hold has
//! been reached, and [`FaultProxy::max_in_flight`] tells how many requests
//! of a kind were being answered at the same time.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{Framing, HOP_BY_HOP, Head, Server, copy_body, send_upstream, serve_requests};
use super::registry::TestRegistry;

/// What goes wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sends the head and the first `after` body bytes, waits a moment (so
    /// the client has read them), then resets the connection (RST).
    Reset {
        /// Body bytes sent before the reset.
        after: u64,
    },
    /// Answers this status (500, 502, 503, …) with an error envelope; the
    /// registry never sees the request.
    Status(u16),
    /// As [`Fault::Status`], with [`HOSTILE_MESSAGE`] as the envelope's
    /// code and message: terminal escape sequences, a carriage return, a bell, a C1
    /// control and a bidirectional override, for tests that no registry text
    /// reaches a terminal raw.
    HostileStatus(u16),
    /// Answers `429 Too Many Requests` with `Retry-After: <secs>`.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after: u64,
    },
    /// Keeps the registry's `Content-Length` but closes after half the body.
    Truncate,
    /// Sends the body at about this many bytes a second, in ten steps a second.
    Trickle {
        /// Bytes a second.
        bytes_per_sec: u64,
    },
    /// Flips the lowest bit of the body's middle byte (the length stays right).
    FlipByte,
    /// Waits this many milliseconds, then forwards the request as is (a slow
    /// server: requests of a client overlap, and the in-flight counts show it).
    Delay {
        /// Milliseconds before forwarding.
        ms: u64,
    },
    /// Sends the head and the first `after` body bytes (for `after: 0`
    /// nothing at all, not even the head, and the registry is not asked),
    /// then sends nothing more and keeps the connection open until the
    /// client goes away (or [`HOLD_LIMIT`] passes). While it holds, its log
    /// entry says so ([`Logged::held`]).
    Hold {
        /// Body bytes sent before holding.
        after: u64,
    },
}

/// The message of a [`Fault::HostileStatus`] envelope, as the client decodes
/// it: clears the screen, homes the cursor, writes over the line and rings.
pub const HOSTILE_MESSAGE: &str = "\u{1b}[2J\u{1b}[HVERIFIED\r\u{7}\u{9b}0m\u{202e}txt.exe";

/// The longest a [`Fault::Hold`] keeps a connection whose client stays.
pub const HOLD_LIMIT: Duration = Duration::from_secs(300);

/// Which requests a [`Rule`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET /v2/<repo>/blobs/<digest>`.
    BlobGet,
    /// `GET /v2/<repo>/manifests/<reference>`.
    ManifestGet,
    /// `GET /v2/_catalog`.
    Catalog,
    /// `GET /v2/<repo>/tags/list`.
    TagList,
    /// `POST` starting a blob upload (or a mount).
    UploadStart,
    /// `PATCH` of a blob upload.
    UploadPatch,
    /// `PUT` of a blob upload (its commit).
    UploadPut,
    /// `PUT /v2/<repo>/manifests/<reference>`.
    ManifestPut,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 8] = [
        Kind::BlobGet,
        Kind::ManifestGet,
        Kind::Catalog,
        Kind::TagList,
        Kind::UploadStart,
        Kind::UploadPatch,
        Kind::UploadPut,
        Kind::ManifestPut,
    ];

    /// Whether a request with this method and path (without the query) is of this kind.
    pub fn matches(self, method: &str, path: &str) -> bool {
        let v2 = path.starts_with("/v2/");
        let upload = v2 && path.contains("/blobs/uploads/");
        match self {
            Kind::BlobGet => method == "GET" && v2 && path.contains("/blobs/") && !upload,
            Kind::ManifestGet => method == "GET" && v2 && path.contains("/manifests/"),
            Kind::Catalog => method == "GET" && path == "/v2/_catalog",
            Kind::TagList => method == "GET" && v2 && path.ends_with("/tags/list"),
            Kind::UploadStart => method == "POST" && upload,
            Kind::UploadPatch => method == "PATCH" && upload,
            Kind::UploadPut => method == "PUT" && upload,
            Kind::ManifestPut => method == "PUT" && v2 && path.contains("/manifests/"),
        }
    }
}

/// How many matching attempts get the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Times {
    First(usize),
    FirstPerPath(usize),
    Always,
}

/// One fault and the requests it applies to; add it with [`FaultProxy::add`].
#[derive(Debug, Clone)]
pub struct Rule {
    kind: Kind,
    paths: Vec<String>,
    fresh_only: bool,
    times: Times,
    fault: Fault,
}

impl Rule {
    /// `fault` for the first matching request of `kind` (see [`Rule::first`]).
    pub fn new(kind: Kind, fault: Fault) -> Self {
        Rule {
            kind,
            paths: Vec::new(),
            fresh_only: false,
            times: Times::First(1),
            fault,
        }
    }

    /// Only requests whose path holds one of `parts` (a digest, a repository).
    pub fn paths<S: AsRef<str>>(mut self, parts: &[S]) -> Self {
        self.paths = parts.iter().map(|p| p.as_ref().to_owned()).collect();
        self
    }

    /// Only requests without a `Range` header (first tries, not resumes).
    pub fn fresh_only(mut self) -> Self {
        self.fresh_only = true;
        self
    }

    /// The first `n` matching requests, counted together.
    pub fn first(mut self, n: usize) -> Self {
        self.times = Times::First(n);
        self
    }

    /// The first `n` matching requests of each path.
    pub fn first_per_path(mut self, n: usize) -> Self {
        self.times = Times::FirstPerPath(n);
        self
    }

    /// Every matching request: nothing can heal it.
    pub fn always(mut self) -> Self {
        self.times = Times::Always;
        self
    }

    fn matches(&self, method: &str, path: &str, range: Option<&str>) -> bool {
        self.kind.matches(method, path)
            && (self.paths.is_empty() || self.paths.iter().any(|p| path.contains(p.as_str())))
            && !(self.fresh_only && range.is_some())
    }
}

/// One request the proxy received, and what it did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// When the request head arrived, since the proxy started.
    pub at: Duration,
    /// When the answer was done (or broken off), since the proxy started.
    pub done: Duration,
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query without `?`, if any.
    pub query: Option<String>,
    /// The request's `Range` header, if any.
    pub range: Option<String>,
    /// The status sent to the client (0 if no answer got out).
    pub status: u16,
    /// Body bytes sent to the client.
    pub sent: u64,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// A [`Fault::Hold`] reached its point (head and `after` bytes written
    /// to the socket) and is holding; false again once the client went away.
    pub held: bool,
    /// The answer is over: sent whole, broken off, or released from a hold.
    pub finished: bool,
}

impl Logged {
    /// Whether the request is of `kind`.
    pub fn is(&self, kind: Kind) -> bool {
        kind.matches(&self.method, &self.path)
    }

    /// `GET /path [Range] -> 206 (sent bytes) [fault]`, for messages.
    pub fn line(&self) -> String {
        format!(
            "{:>7.3}s {} {}{} {}-> {} ({} bytes){}{}",
            self.at.as_secs_f64(),
            self.method,
            self.path,
            self.query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default(),
            self.range
                .as_deref()
                .map(|r| format!("[Range: {r}] "))
                .unwrap_or_default(),
            self.status,
            self.sent,
            self.fault.map(|f| format!(" {f:?}")).unwrap_or_default(),
            if self.held {
                " HOLDING"
            } else if !self.finished {
                " (in flight)"
            } else {
                ""
            }
        )
    }
}

struct State {
    upstream: String,
    rules: Vec<(Rule, Vec<(String, usize)>)>,
    log: Vec<Logged>,
    /// Requests of each [`Kind`] (by `Kind::ALL` position) being answered now.
    in_flight: [usize; Kind::ALL.len()],
    /// The most of each kind answered at once.
    max_in_flight: [usize; Kind::ALL.len()],
}

impl State {
    /// Counts a request of these kinds in (`+1`) or out (`-1`).
    fn count(&mut self, method: &str, path: &str, delta: isize) {
        for (i, kind) in Kind::ALL.iter().enumerate() {
            if kind.matches(method, path) {
                self.in_flight[i] = self.in_flight[i].saturating_add_signed(delta);
                self.max_in_flight[i] = self.max_in_flight[i].max(self.in_flight[i]);
            }
        }
    }
}

/// The proxy; stops accepting on drop, and releases its holds.
pub struct FaultProxy {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    server: Server,
}

impl FaultProxy {
    /// A proxy in front of `registry` (plain HTTP), injecting nothing yet.
    pub fn in_front_of(registry: &TestRegistry) -> Self {
        assert!(!registry.is_tls(), "FaultProxy speaks plain HTTP only");
        let state = Arc::new(Mutex::new(State {
            upstream: registry.host(),
            rules: Vec::new(),
            log: Vec::new(),
            in_flight: [0; Kind::ALL.len()],
            max_in_flight: [0; Kind::ALL.len()],
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2, epoch) = (Arc::clone(&state), Arc::clone(&stop), Instant::now());
        let server = Server::start(move |stream| {
            // A client hanging up mid-request is not the proxy's failure.
            let _ = serve_connection(stream, &state2, &stop2, epoch);
        });
        FaultProxy {
            state,
            stop,
            server,
        }
    }

    /// Adds a fault; rules are tried in the order added, the first that
    /// matches and still applies wins.
    pub fn add(&self, rule: Rule) -> &Self {
        self.lock().rules.push((rule, Vec::new()));
        self
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Logged> {
        let mut log = self.lock().log.clone();
        log.sort_by_key(|r| r.at);
        log
    }

    /// The log as text, one request a line, for assertion messages.
    pub fn log_text(&self) -> String {
        self.log()
            .iter()
            .map(Logged::line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The requests that got a fault.
    pub fn faulted(&self) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|r| r.fault.is_some())
            .collect()
    }

    /// Polls the log (every 10 ms) until `found` returns something, or
    /// `timeout` passes (then `None`).
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut found: impl FnMut(&[Logged]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = found(&self.log()) {
                return Some(t);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first request (by arrival) now holding on a [`Fault::Hold`]: its
    /// head and `after` bytes are written to the socket. `None` if none
    /// holds within `timeout`.
    pub fn wait_until_held(&self, timeout: Duration) -> Option<Logged> {
        self.wait_for(timeout, |log| log.iter().find(|r| r.held).cloned())
    }

    /// Whether no request holds within `timeout` (every held client went away).
    pub fn wait_until_released(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |log| log.iter().all(|r| !r.held).then_some(()))
            .is_some()
    }

    /// The largest number of requests of `kind` answered at the same time
    /// (from a request's arrival to the end of its answer), since the proxy
    /// started or [`FaultProxy::reset_max_in_flight`].
    pub fn max_in_flight(&self, kind: Kind) -> usize {
        let i = Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is in Kind::ALL");
        self.lock().max_in_flight[i]
    }

    /// Starts [`FaultProxy::max_in_flight`] again from what is in flight now.
    pub fn reset_max_in_flight(&self) {
        let mut s = self.lock();
        s.max_in_flight = s.in_flight;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fault proxy lock")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Holds end on their next poll; the server stops accepting after this.
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("host", &self.host())
            .finish()
    }
}

/// The fault `rules` hold for this request, counting it as an attempt.
fn choose(
    rules: &mut [(Rule, Vec<(String, usize)>)],
    method: &str,
    path: &str,
    range: Option<&str>,
) -> Option<Fault> {
    for (rule, counts) in rules.iter_mut() {
        if !rule.matches(method, path, range) {
            continue;
        }
        let key = match rule.times {
            Times::FirstPerPath(_) => path,
            _ => "",
        };
        let seen = match counts.iter_mut().find(|(k, _)| k == key) {
            Some((_, n)) => n,
            None => {
                counts.push((key.to_owned(), 0));
                &mut counts.last_mut().expect("just pushed").1
            }
        };
        *seen += 1;
        let applies = match rule.times {
            Times::First(n) | Times::FirstPerPath(n) => *seen <= n,
            Times::Always => true,
        };
        if applies {
            return Some(rule.fault);
        }
    }
    None
}

fn serve_connection(
    client: TcpStream,
    state: &Mutex<State>,
    stop: &AtomicBool,
    epoch: Instant,
) -> io::Result<()> {
    serve_requests(client, |head, reader, writer| {
        let (method, path, query) = head.request_target();
        let range = head.get("Range").map(str::to_owned);
        let (upstream, fault, index) = {
            let mut s = state.lock().expect("fault proxy lock");
            let fault = choose(&mut s.rules, &method, &path, range.as_deref());
            s.count(&method, &path, 1);
            s.log.push(Logged {
                at: epoch.elapsed(),
                done: epoch.elapsed(),
                method,
                path,
                query,
                range,
                status: 0,
                sent: 0,
                fault,
                held: false,
                finished: false,
            });
            (s.upstream.clone(), fault, s.log.len() - 1)
        };
        let mut outcome = Outcome::default();
        let mut ended = false;
        let mut tell = |told: Told, outcome: &Outcome| {
            let mut s = state.lock().expect("fault proxy lock");
            let entry = &mut s.log[index];
            entry.status = outcome.status;
            entry.sent = outcome.sent;
            match told {
                Told::Holding => entry.held = true,
                Told::LastByte => {
                    let (method, path) = (entry.method.clone(), entry.path.clone());
                    s.count(&method, &path, -1);
                    ended = true;
                }
            }
        };
        let result = answer(
            head,
            reader,
            writer,
            &upstream,
            fault,
            &mut outcome,
            &mut tell,
            stop,
        );
        let mut s = state.lock().expect("fault proxy lock");
        let entry = &mut s.log[index];
        entry.done = epoch.elapsed();
        entry.status = outcome.status;
        entry.sent = outcome.sent;
        entry.held = false;
        entry.finished = true;
        if !outcome.applied {
            entry.fault = None;
        }
        let (method, path) = (entry.method.clone(), entry.path.clone());
        if !ended {
            s.count(&method, &path, -1);
        }
        result
    })
}

/// What [`answer`] tells the proxy while it answers.
#[derive(Clone, Copy)]
enum Told {
    /// A [`Fault::Hold`] starts holding.
    Holding,
    /// The last byte of a trickled body is about to be sent: from here on the
    /// request no longer counts as in flight, since the client cannot start
    /// its next one before that byte arrives (counting it until after the
    /// write would let a busy machine see two at once with `--jobs 1`).
    LastByte,
}

/// What was sent back, for the log.
#[derive(Default)]
struct Outcome {
    status: u16,
    sent: u64,
    /// Whether the fault chosen could be applied (body faults need a body).
    applied: bool,
}

/// Answers one request, with `fault` if any; returns whether to close.
/// `tell` is told when a [`Fault::Hold`] starts holding and before the last
/// byte of a trickled body; `stop` ends holds.
#[allow(clippy::too_many_arguments)]
fn answer(
    head: &Head,
    client_in: &mut BufReader<TcpStream>,
    client_out: &mut TcpStream,
    upstream: &str,
    fault: Option<Fault>,
    outcome: &mut Outcome,
    tell: &mut dyn FnMut(Told, &Outcome),
    stop: &AtomicBool,
) -> io::Result<bool> {
    if let Some(
        status @ (Fault::Status(_) | Fault::HostileStatus(_) | Fault::TooManyRequests { .. }),
    ) = fault
    {
        outcome.applied = true;
        return refuse(head, client_in, client_out, status, outcome);
    }
    if let Some(Fault::Hold { after: 0 }) = fault {
        outcome.applied = true;
        tell(Told::Holding, outcome);
        return hold(client_in, stop);
    }
    let fault = match fault {
        Some(Fault::Delay { ms }) => {
            outcome.applied = true;
            std::thread::sleep(Duration::from_millis(ms));
            None
        }
        other => other,
    };
    let mut answer = send_upstream(upstream, head, client_in, client_out)?;
    outcome.status = answer.status;
    let body_len = match answer.framing {
        Framing::Length(n) if n > 0 && (200..300).contains(&answer.status) => Some(n),
        _ => None,
    };
    let (fault, len) = match (fault, body_len) {
        (Some(fault), Some(len)) => (fault, len),
        _ => {
            // No fault, or a body fault on an answer without a body to spoil.
            let close = answer.framing == Framing::UntilEof;
            let extra: &[(&str, &str)] = if close {
                &[("Connection", "close")]
            } else {
                &[]
            };
            client_out.write_all(answer.head.render(HOP_BY_HOP, extra).as_bytes())?;
            let mut counted = Counted::new(client_out);
            let result = copy_body(&mut answer.body, &mut counted, answer.framing, false);
            outcome.sent = counted.count;
            result?;
            return Ok(close);
        }
    };
    outcome.applied = true;
    client_out.write_all(answer.head.render(HOP_BY_HOP, &[]).as_bytes())?;
    let body = &mut answer.body;
    match fault {
        Fault::Reset { after } => {
            outcome.sent = copy_n(body, client_out, after.min(len))?;
            client_out.flush()?;
            // Give the client time to read what was sent before it is reset.
            std::thread::sleep(Duration::from_millis(200));
            set_zero_linger(client_out)?;
            // An error ends the connection without a shutdown (a FIN): its
            // handles are dropped and the last one to close sends the RST.
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "injected reset",
            ))
        }
        Fault::Truncate => {
            outcome.sent = copy_n(body, client_out, len / 2)?;
            client_out.flush()?;
            client_out.shutdown(std::net::Shutdown::Both)?;
            Ok(true)
        }
        Fault::Trickle { bytes_per_sec } => {
            let step = (bytes_per_sec / 10).max(1);
            while outcome.sent < len {
                let mut n = step.min(len - outcome.sent);
                if outcome.sent + n == len {
                    if n > 1 {
                        outcome.sent += copy_n(body, client_out, n - 1)?;
                        client_out.flush()?;
                    }
                    tell(Told::LastByte, outcome);
                    n = 1;
                }
                outcome.sent += copy_n(body, client_out, n)?;
                client_out.flush()?;
                if outcome.sent < len {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(false)
        }
        Fault::FlipByte => {
            let mut bytes = Vec::new();
            body.take(len).read_to_end(&mut bytes)?;
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            client_out.write_all(&bytes)?;
            outcome.sent = bytes.len() as u64;
            Ok(bytes.len() as u64 != len)
        }
        Fault::Hold { after } => {
            outcome.sent = copy_n(body, client_out, after.min(len))?;
            client_out.flush()?;
            tell(Told::Holding, outcome);
            hold(client_in, stop)
        }
        Fault::Status(_)
        | Fault::HostileStatus(_)
        | Fault::TooManyRequests { .. }
        | Fault::Delay { .. } => {
            unreachable!("answered or applied above")
        }
    }
}

/// Sends nothing more until the client goes away (end of stream or an
/// error on its socket), the proxy is dropped (`stop`), or [`HOLD_LIMIT`]
/// passes; whatever the client sends meanwhile is read and dropped. Always
/// ends the connection.
fn hold(client_in: &mut BufReader<TcpStream>, stop: &AtomicBool) -> io::Result<bool> {
    client_in
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))?;
    let deadline = Instant::now() + HOLD_LIMIT;
    let mut scratch = [0u8; 4096];
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match client_in.read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    Err(io::Error::other("held until the client went away"))
}

/// Answers an error status without asking the registry; the request body is
/// read and dropped first (or, when the client waits for `100 Continue`, the
/// connection is closed after the answer).
fn refuse(
    head: &Head,
    client_in: &mut impl BufRead,
    client_out: &mut impl Write,
    fault: Fault,
    outcome: &mut Outcome,
) -> io::Result<bool> {
    let waits = head.has_token("Expect", "100-continue");
    if !waits && let framing @ (Framing::Length(_) | Framing::Chunked) = head.framing() {
        copy_body(client_in, &mut io::sink(), framing, true)?;
    }
    let (status, reason, code, extra) = match fault {
        Fault::TooManyRequests { retry_after } => (
            429,
            "Too Many Requests",
            "TOOMANYREQUESTS",
            format!("Retry-After: {retry_after}\r\n"),
        ),
        Fault::Status(500) => (500, "Internal Server Error", "UNKNOWN", String::new()),
        Fault::Status(502) => (502, "Bad Gateway", "UNAVAILABLE", String::new()),
        Fault::Status(503) => (503, "Service Unavailable", "UNAVAILABLE", String::new()),
        Fault::Status(s) | Fault::HostileStatus(s) => {
            (s, "Injected Fault", "UNKNOWN", String::new())
        }
        other => unreachable!("{other:?} is not an error status"),
    };
    let (code, message) = match fault {
        Fault::HostileStatus(_) => (HOSTILE_MESSAGE, HOSTILE_MESSAGE.to_owned()),
        _ => (code, format!("injected {status}")),
    };
    let errors = serde_json::json!({"errors": [{"code": code, "message": message}]});
    let body = errors.to_string();
    write!(
        client_out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    outcome.status = status;
    outcome.sent = body.len() as u64;
    Ok(waits)
}

/// Copies up to `n` bytes; returns how many were copied.
fn copy_n(from: &mut impl Read, to: &mut impl Write, n: u64) -> io::Result<u64> {
    io::copy(&mut from.take(n), to)
}

/// Sets `SO_LINGER` to 0 on `stream`'s socket, so that closing it sends a
/// TCP reset (RST) instead of a FIN.
///
/// std cannot set `SO_LINGER` on stable Rust; tokio (a dependency, built with
/// `net` for reqwest) can, on a stream registered with a runtime. The option
/// belongs to the socket, so it holds for every handle of it.
fn set_zero_linger(stream: &TcpStream) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let clone = stream.try_clone()?;
    clone.set_nonblocking(true)?;
    runtime.block_on(async move {
        let stream = tokio::net::TcpStream::from_std(clone)?;
        stream.set_zero_linger()?;
        // Back out of the runtime; dropping this one handle closes nothing.
        drop(stream.into_std()?);
        Ok(())
    })
}

/// A writer that counts what went through.
struct Counted<'a, W> {
    inner: &'a mut W,
    count: u64,
}

impl<'a, W: Write> Counted<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Counted { inner, count: 0 }
    }
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
