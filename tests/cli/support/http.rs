//! The bits of HTTP/1.1 the in-test servers share: reading a request or
//! response head, body framing (length, chunked, until EOF) and percent
//! coding. Blocking `std::io`, one connection per thread.

use std::io::{self, BufRead, Read, Write};

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
