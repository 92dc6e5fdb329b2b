//! A small HTTP/1.1 proxy in front of a plain-HTTP registry that paginates
//! `GET /v2/<repo>/tags/list` (the real registry never does) and counts
//! requests by path.
//!
//! Everything else is forwarded byte for byte, bodies streamed (Content-Length
//! or chunked), headers untouched — `Host` too, so the registry's upload
//! `Location`s point back at the proxy — except the hop-by-hop `Connection`,
//! `Keep-Alive` and `Expect` (the proxy answers `100 Continue` itself). Each
//! forwarded request uses its own upstream connection; the client side keeps
//! its connection alive.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::registry::TestRegistry;

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, `PUT`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
}

/// The proxy; stops accepting on drop.
#[derive(Debug)]
pub struct PagingProxy {
    port: u16,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl PagingProxy {
    /// A proxy for `upstream` (`HOST:PORT`, plain HTTP) serving tag lists in
    /// pages of at most `tag_page_size`.
    pub fn start(upstream: &str, tag_page_size: usize) -> Self {
        assert!(tag_page_size > 0, "tag_page_size must be > 0");
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy on 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("reading the proxy address")
            .port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let config = Arc::new(Config {
            upstream: upstream.to_owned(),
            page: tag_page_size,
        });
        let (log2, stop2) = (Arc::clone(&log), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (config, log) = (Arc::clone(&config), Arc::clone(&log2));
                std::thread::spawn(move || {
                    // A client hanging up mid-request is not the proxy's failure.
                    let _ = serve_connection(stream, &config, &log);
                });
            }
        });
        PagingProxy {
            port,
            log,
            stop,
            accept: Some(accept),
        }
    }

    /// A proxy in front of `registry`, which must be plain HTTP.
    pub fn in_front_of(registry: &TestRegistry, tag_page_size: usize) -> Self {
        assert!(!registry.is_tls(), "PagingProxy speaks plain HTTP only");
        Self::start(&registry.host(), tag_page_size)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// How many requests (any method, any query) had exactly this path.
    pub fn requests(&self, path: &str) -> usize {
        self.log().iter().filter(|r| r.path == path).count()
    }

    /// Counts of requests by `METHOD path`, e.g. `GET /v2/x/tags/list`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.log() {
            *counts
                .entry(format!("{} {}", r.method, r.path))
                .or_insert(0) += 1;
        }
        counts
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Request> {
        self.log.lock().expect("proxy log lock").clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_log(&self) {
        self.log.lock().expect("proxy log lock").clear();
    }
}

impl Drop for PagingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

struct Config {
    upstream: String,
    page: usize,
}

/// A request or response head: start line and headers in order.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn read(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
        let mut start = String::new();
        if reader.read_line(&mut start)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "headers cut short",
                ));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad header line"))?;
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        Ok(Some(Head {
            start: start.trim_end().to_owned(),
            headers,
        }))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The head as text, leaving out `drop` headers and adding `extra`.
    fn render(&self, drop: &[&str], extra: &[(&str, &str)]) -> String {
        let mut out = format!("{}\r\n", self.start);
        for (name, value) in &self.headers {
            if !drop.iter().any(|d| name.eq_ignore_ascii_case(d)) {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out + "\r\n"
    }

    fn framing(&self) -> Framing {
        if self.has_token("Transfer-Encoding", "chunked") {
            Framing::Chunked
        } else if let Some(length) = self.get("Content-Length") {
            Framing::Length(length.parse().unwrap_or(0))
        } else {
            Framing::UntilEof
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilEof,
}

const HOP_BY_HOP: &[&str] = &["Connection", "Keep-Alive", "Expect", "Proxy-Connection"];

fn serve_connection(
    client: TcpStream,
    config: &Config,
    log: &Mutex<Vec<Request>>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    while let Some(head) = Head::read(&mut reader)? {
        let mut parts = head.start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (target.clone(), None),
        };
        log.lock().expect("proxy log lock").push(Request {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
        });
        let client_close =
            head.has_token("Connection", "close") || head.start.ends_with("HTTP/1.0");
        let close = if method == "GET" && path.starts_with("/v2/") && path.ends_with("/tags/list") {
            page_tags(&head, &path, query.as_deref(), config, &mut writer)?
        } else {
            forward(&head, &method, &mut reader, &mut writer, config)?
        };
        writer.flush()?;
        if close || client_close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// Forwards one request and its response; returns whether to close the client connection.
fn forward(
    head: &Head,
    method: &str,
    client_in: &mut impl BufRead,
    client_out: &mut TcpStream,
    config: &Config,
) -> io::Result<bool> {
    let mut upstream = TcpStream::connect(&config.upstream)?;
    upstream.write_all(
        head.render(HOP_BY_HOP, &[("Connection", "close")])
            .as_bytes(),
    )?;
    if head.has_token("Expect", "100-continue") {
        client_out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    match head.framing() {
        // A request without a length has no body.
        Framing::UntilEof => {}
        framing => copy_body(client_in, &mut upstream, framing, false)?,
    }
    upstream.flush()?;
    let mut upstream_in = BufReader::new(upstream);
    let response = Head::read(&mut upstream_in)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed without answering",
        )
    })?;
    let status: u16 = response
        .start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let framing =
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else {
            response.framing()
        };
    let close = framing == Framing::UntilEof;
    let extra: &[(&str, &str)] = if close {
        &[("Connection", "close")]
    } else {
        &[]
    };
    client_out.write_all(response.render(HOP_BY_HOP, extra).as_bytes())?;
    copy_body(&mut upstream_in, client_out, framing, false)?;
    Ok(close)
}

/// Copies one body as framed, streaming; chunk syntax is kept unless `dechunk`.
fn copy_body(
    from: &mut impl BufRead,
    to: &mut impl Write,
    framing: Framing,
    dechunk: bool,
) -> io::Result<()> {
    let cut_short = || io::Error::new(io::ErrorKind::UnexpectedEof, "body cut short");
    match framing {
        Framing::Length(n) => {
            if io::copy(&mut from.take(n), to)? != n {
                return Err(cut_short());
            }
        }
        Framing::UntilEof => {
            io::copy(from, to)?;
        }
        Framing::Chunked => loop {
            let mut line = String::new();
            if from.read_line(&mut line)? == 0 {
                return Err(cut_short());
            }
            let size_text = line.trim().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if !dechunk {
                to.write_all(line.as_bytes())?;
            }
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    line.clear();
                    if from.read_line(&mut line)? == 0 {
                        return Err(cut_short());
                    }
                    if !dechunk {
                        to.write_all(line.as_bytes())?;
                    }
                    if line.trim().is_empty() {
                        return Ok(());
                    }
                }
            }
            copy_body(from, to, Framing::Length(size), false)?;
            let mut crlf = [0u8; 2];
            from.read_exact(&mut crlf)?;
            if !dechunk {
                to.write_all(&crlf)?;
            }
        },
    }
    Ok(())
}

/// Reads a whole body into memory, undoing chunked encoding.
fn read_body(from: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    copy_body(from, &mut body, framing, true)?;
    Ok(body)
}

/// Fetches the full tag list upstream and answers one page of it with a
/// `Link: <…>; rel="next"` header when more remain. Returns whether to close.
fn page_tags(
    head: &Head,
    path: &str,
    query: Option<&str>,
    config: &Config,
    out: &mut TcpStream,
) -> io::Result<bool> {
    let params = parse_query(query.unwrap_or_default());
    let upstream_head = Head {
        start: format!("GET {path} HTTP/1.1"),
        headers: head.headers.clone(),
    };
    let mut upstream = TcpStream::connect(&config.upstream)?;
    let drop: Vec<&str> = HOP_BY_HOP
        .iter()
        .copied()
        .chain(["Content-Length", "Transfer-Encoding"])
        .collect();
    upstream.write_all(
        upstream_head
            .render(&drop, &[("Connection", "close")])
            .as_bytes(),
    )?;
    let mut upstream_in = BufReader::new(upstream);
    let response = Head::read(&mut upstream_in)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed without answering",
        )
    })?;
    let body = read_body(&mut upstream_in, response.framing())?;
    let status_ok = response.start.split(' ').nth(1) == Some("200");
    let list: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let tags = list.as_ref().and_then(|v| v["tags"].as_array());
    let (Some(list), Some(tags), true) = (list.as_ref(), tags, status_ok) else {
        // Errors (401, 404, …) go back as they came, re-framed with a length.
        let length = body.len().to_string();
        let drop: Vec<&str> = HOP_BY_HOP
            .iter()
            .copied()
            .chain(["Content-Length", "Transfer-Encoding"])
            .collect();
        out.write_all(
            response
                .render(&drop, &[("Content-Length", &length)])
                .as_bytes(),
        )?;
        out.write_all(&body)?;
        return Ok(false);
    };
    let mut tags: Vec<String> = tags
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    tags.sort();
    let page = params
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(config.page)
        .min(config.page);
    let rest: Vec<String> = match params.get("last") {
        Some(last) => tags.into_iter().filter(|t| t > last).collect(),
        None => tags,
    };
    let shown = &rest[..page.min(rest.len())];
    let answer = serde_json::json!({ "name": list["name"], "tags": shown });
    let answer = serde_json::to_vec(&answer).expect("serializing a tag list");
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\n",
        answer.len()
    );
    if let (true, Some(last)) = (shown.len() < rest.len(), shown.last()) {
        head.push_str(&format!(
            "Link: <{path}?n={page}&last={}>; rel=\"next\"\r\n",
            percent_encode(last)
        ));
    }
    out.write_all(head.as_bytes())?;
    out.write_all(b"\r\n")?;
    out.write_all(&answer)?;
    Ok(false)
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
