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
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use super::http::{
    Framing, HOP_BY_HOP, Head, Server, copy_body, percent_decode, percent_encode, read_body,
    send_upstream, serve_requests,
};
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
    log: Arc<Mutex<Vec<Request>>>,
    server: Server,
}

impl PagingProxy {
    /// A proxy for `upstream` (`HOST:PORT`, plain HTTP) serving tag lists in
    /// pages of at most `tag_page_size`.
    pub fn start(upstream: &str, tag_page_size: usize) -> Self {
        assert!(tag_page_size > 0, "tag_page_size must be > 0");
        let log = Arc::new(Mutex::new(Vec::new()));
        let config = Config {
            upstream: upstream.to_owned(),
            page: tag_page_size,
        };
        let log2 = Arc::clone(&log);
        let server = Server::start(move |stream| {
            // A client hanging up mid-request is not the proxy's failure.
            let _ = serve_connection(stream, &config, &log2);
        });
        PagingProxy { log, server }
    }

    /// A proxy in front of `registry`, which must be plain HTTP.
    pub fn in_front_of(registry: &TestRegistry, tag_page_size: usize) -> Self {
        assert!(!registry.is_tls(), "PagingProxy speaks plain HTTP only");
        Self::start(&registry.host(), tag_page_size)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
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

struct Config {
    upstream: String,
    page: usize,
}

fn serve_connection(
    client: TcpStream,
    config: &Config,
    log: &Mutex<Vec<Request>>,
) -> io::Result<()> {
    serve_requests(client, |head, reader, writer| {
        let (method, path, query) = head.request_target();
        log.lock().expect("proxy log lock").push(Request {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
        });
        if method == "GET" && path.starts_with("/v2/") && path.ends_with("/tags/list") {
            page_tags(head, &path, query.as_deref(), config, writer)
        } else {
            forward(head, reader, writer, config)
        }
    })
}

/// Forwards one request and its response; returns whether to close the client connection.
fn forward(
    head: &Head,
    client_in: &mut impl BufRead,
    client_out: &mut TcpStream,
    config: &Config,
) -> io::Result<bool> {
    let mut answer = send_upstream(&config.upstream, head, client_in, client_out)?;
    let close = answer.framing == Framing::UntilEof;
    let extra: &[(&str, &str)] = if close {
        &[("Connection", "close")]
    } else {
        &[]
    };
    client_out.write_all(answer.head.render(HOP_BY_HOP, extra).as_bytes())?;
    copy_body(&mut answer.body, client_out, answer.framing, false)?;
    Ok(close)
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
