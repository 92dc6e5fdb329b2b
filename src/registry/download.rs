//! Blob bodies that survive a broken connection.
//!
//! When a body breaks off, the blob is asked for again from the registry URL
//! (not the redirect target, whose presigned URL may have expired) with
//! `Range: bytes=<received>-`, and reading carries on only if the answer is a
//! `206` starting exactly there. Anything else ends the stream with the
//! original error; the bytes already passed on cannot be taken back.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use reqwest::header::CONTENT_RANGE;
use reqwest::{Response, Url};

use super::RegistryError;
use super::error::transport_error;
use super::pace::Pace;
use super::session::{Scope, Session, backoff, header_strs};

/// How many times a broken blob body is resumed with `Range`.
const MAX_RESUMES: u32 = 5;

/// The body of `first` (a GET of `url`), resumed with `Range` when it breaks.
pub(crate) fn resumable_body(
    session: Arc<Session>,
    url: Url,
    scope: Scope,
    first: Response,
) -> BoxStream<'static, Result<Bytes, RegistryError>> {
    struct State {
        session: Arc<Session>,
        url: Url,
        scope: Scope,
        body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
        received: u64,
        resumes: u32,
        pace: Pace,
    }
    let state = State {
        session,
        url,
        scope,
        body: Some(first.bytes_stream().boxed()),
        received: 0,
        resumes: 0,
        pace: Pace::new(),
    };
    stream::unfold(state, |mut st| async move {
        loop {
            let body = st.body.as_mut()?;
            let next = st
                .pace
                .timed(&st.url, body.next(), |item| match item {
                    Some(Ok(chunk)) => chunk.len(),
                    _ => 0,
                })
                .await;
            let err = match next {
                Ok(None) => return None,
                Ok(Some(Ok(chunk))) => {
                    st.received += chunk.len() as u64;
                    return Some((Ok(chunk), st));
                }
                Ok(Some(Err(e))) => transport_error(&st.url, e),
                // The chunk that came last is not passed on: the resume asks for it again.
                Err(too_slow) => too_slow,
            };
            if !err.is_retryable() || st.resumes >= MAX_RESUMES {
                st.body = None;
                return Some((Err(err), st));
            }
            st.resumes += 1;
            tokio::time::sleep(backoff(st.resumes)).await;
            tracing::debug!(url = %st.url, from = st.received, "resuming blob body");
            match resume(&st.session, &st.url, &st.scope, st.received).await {
                Some(next) => {
                    st.body = Some(next);
                    st.pace = Pace::new();
                }
                None => {
                    st.body = None;
                    return Some((Err(err), st));
                }
            }
        }
    })
    .boxed()
}

/// Asks for the rest of a blob from byte `from`; `None` if the registry cannot resume there.
async fn resume(
    session: &Session,
    url: &Url,
    scope: &Scope,
    from: u64,
) -> Option<BoxStream<'static, reqwest::Result<Bytes>>> {
    let resp = session.get(url, scope, None, Some(from)).await.ok()?;
    let status = resp.status().as_u16();
    let ok = match status {
        200 => from == 0,
        206 => {
            header_strs(resp.headers(), CONTENT_RANGE)
                .next()
                .and_then(content_range_start)
                == Some(from)
        }
        _ => false,
    };
    if !ok {
        tracing::debug!(%url, status, from, "registry cannot resume the blob there");
        return None;
    }
    Some(resp.bytes_stream().boxed())
}

/// The first byte position of `Content-Range: bytes <start>-<end>/<total>`.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
