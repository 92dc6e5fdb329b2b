//! The bits of HTTP/1.1 the in-test servers share: reading a request or
//! response head, body framing (length, chunked, until EOF), percent coding,
//! and for the proxies an accept loop ([`Server`]), a keep-alive request loop
//! ([`serve_requests`]) and one forwarded request ([`send_upstream`]).
//! Blocking `std::io`, one connection per thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Hop-by-hop headers a proxy does not pass on (it answers `100 Continue` itself).
pub const HOP_BY_HOP: &[&str] = &["Connection", "Keep-Alive", "Expect", "Proxy-Connection"];

/// A request or response head: start line and headers in order.
pub struct Head {
    /// The request or status line, without its line end.
    pub start: String,
    /// Header lines as (name, value), in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Reads a head; `None` at a clean end of stream before one starts.
    pub fn read(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
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

    /// The first header named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The head as text, leaving out `drop` headers and adding `extra`.
    pub fn render(&self, drop: &[&str], extra: &[(&str, &str)]) -> String {
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

    /// A request line's method, path and query (without `?`).
    pub fn request_target(&self) -> (String, String, Option<String>) {
        let mut parts = self.start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default();
        match target.split_once('?') {
            Some((path, query)) => (method, path.to_owned(), Some(query.to_owned())),
            None => (method, target.to_owned(), None),
        }
    }

    /// A status line's code (0 if it has none).
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// How the body that follows this head is delimited.
    pub fn framing(&self) -> Framing {
        if self.has_token("Transfer-Encoding", "chunked") {
            Framing::Chunked
        } else if let Some(length) = self.get("Content-Length") {
            Framing::Length(length.parse().unwrap_or(0))
        } else {
            Framing::UntilEof
        }
    }
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilEof,
}

/// Copies one body as framed, streaming; chunk syntax is kept unless `dechunk`.
pub fn copy_body(
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
pub fn read_body(from: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    copy_body(from, &mut body, framing, true)?;
    Ok(body)
}

/// Decodes `%XX` escapes and `+` (as a space), as in a query or form.
pub fn percent_decode(text: &str) -> String {
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

/// Escapes all but unreserved characters (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Accepts connections on `127.0.0.1:0`, each served on its own thread;
/// stops accepting on drop.
#[derive(Debug)]
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds a loopback port and hands every connection to `serve`.
    pub fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a proxy on 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("reading the proxy address")
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let (serve, stop2) = (Arc::new(serve), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let serve = Arc::clone(&serve);
                std::thread::spawn(move || serve(stream));
            }
        });
        Server {
            port,
            stop,
            accept: Some(accept),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Serves requests on one client connection until it closes: `handle` gets
/// each request head with the connection's reader (at the request body) and
/// writer, answers, and returns whether to close. A client asking for
/// `Connection: close` (or speaking HTTP/1.0) gets it.
pub fn serve_requests(
    client: TcpStream,
    mut handle: impl FnMut(&Head, &mut BufReader<TcpStream>, &mut TcpStream) -> io::Result<bool>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    while let Some(head) = Head::read(&mut reader)? {
        let client_close =
            head.has_token("Connection", "close") || head.start.ends_with("HTTP/1.0");
        let close = handle(&head, &mut reader, &mut writer)?;
        writer.flush()?;
        if close || client_close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// An upstream's answer to a forwarded request, its body not yet read.
pub struct Upstream {
    /// The response head as received.
    pub head: Head,
    /// Its status code.
    pub status: u16,
    /// How its body is delimited (no body for `HEAD`, 1xx, 204 and 304).
    pub framing: Framing,
    /// The connection, positioned at the body.
    pub body: BufReader<TcpStream>,
}

/// Forwards one request to `upstream` (`HOST:PORT`) on a fresh connection
/// (`Connection: close`, other hop-by-hop headers dropped, `Host` kept): its
/// head, and its body read from `client_in`. Answers `100 Continue` to the
/// client itself. Returns the answer with its body unread.
pub fn send_upstream(
    upstream: &str,
    head: &Head,
    client_in: &mut impl BufRead,
    client_out: &mut impl Write,
) -> io::Result<Upstream> {
    let mut conn = TcpStream::connect(upstream)?;
    conn.write_all(
        head.render(HOP_BY_HOP, &[("Connection", "close")])
            .as_bytes(),
    )?;
    if head.has_token("Expect", "100-continue") {
        client_out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    match head.framing() {
        // A request without a length has no body.
        Framing::UntilEof => {}
        framing => copy_body(client_in, &mut conn, framing, false)?,
    }
    conn.flush()?;
    let mut body = BufReader::new(conn);
    let response = Head::read(&mut body)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed without answering",
        )
    })?;
    let status = response.status();
    let is_head = head.start.starts_with("HEAD ");
    let framing = if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else {
        response.framing()
    };
    Ok(Upstream {
        head: response,
        status,
        framing,
        body,
    })
}
