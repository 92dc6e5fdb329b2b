//! [`BlobStream`]: a blob body that checks its own size and digest as it goes.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};

use crate::digest::{Digest, Hasher};

use super::RegistryError;

/// A blob body as a stream of chunks that checks itself.
///
/// Chunks are passed through as they arrive (nothing is buffered). The stream
/// fails with [`RegistryError::SizeMismatch`] as soon as more than `size` bytes
/// arrive, and instead of ending it fails with `SizeMismatch` if fewer arrived
/// or [`RegistryError::DigestMismatch`] if the sha256 differs. So a consumer
/// that sees the end of the stream has seen exactly the blob it asked for. After
/// an error the stream ends.
pub struct BlobStream {
    inner: BoxStream<'static, Result<Bytes, RegistryError>>,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    what: String,
    done: bool,
}

impl BlobStream {
    /// Wraps any stream of chunks (a registry body, a file) in the size and digest checks.
    ///
    /// `what` names the content in errors (for example `blob sha256:… in repo/app`).
    pub fn new(
        inner: impl Stream<Item = Result<Bytes, RegistryError>> + Send + 'static,
        expected: Digest,
        size: u64,
        what: impl Into<String>,
    ) -> Self {
        BlobStream {
            inner: inner.boxed(),
            hasher: Hasher::new(),
            expected,
            size,
            what: what.into(),
            done: false,
        }
    }

    /// The digest the content must have.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// The size the content must have.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many bytes have been passed through so far.
    pub fn received(&self) -> u64 {
        self.hasher.len()
    }

    fn fail(&mut self, err: RegistryError) -> Poll<Option<Result<Bytes, RegistryError>>> {
        self.done = true;
        Poll::Ready(Some(Err(err)))
    }

    fn finish(&mut self) -> Poll<Option<Result<Bytes, RegistryError>>> {
        self.done = true;
        let received = self.hasher.len();
        if received != self.size {
            return Poll::Ready(Some(Err(RegistryError::SizeMismatch {
                what: self.what.clone(),
                expected: self.size,
                found: received,
                more: false,
            })));
        }
        let found = std::mem::take(&mut self.hasher).finish();
        if found != self.expected {
            return Poll::Ready(Some(Err(RegistryError::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected,
                found,
            })));
        }
        Poll::Ready(None)
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return this.finish(),
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    let total = this.hasher.len() + chunk.len() as u64;
                    if total > this.size {
                        let err = RegistryError::SizeMismatch {
                            what: this.what.clone(),
                            expected: this.size,
                            found: total,
                            more: true,
                        };
                        return this.fail(err);
                    }
                    this.hasher.update(&chunk);
                    return Poll::Ready(Some(Ok(chunk)));
                }
            }
        }
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("what", &self.what)
            .field("expected", &self.expected)
            .field("size", &self.size)
            .field("received", &self.hasher.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<Bytes, RegistryError>> + Send + 'static {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    async fn drain(mut s: BlobStream) -> (Vec<u8>, Option<RegistryError>) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => {
                    assert!(s.next().await.is_none(), "stream must end after an error");
                    return (out, Some(e));
                }
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn passes_matching_content_through() {
        let s = BlobStream::new(chunks(&[b"hel", b"", b"lo"]), Digest::of(b"hello"), 5, "t");
        let (out, err) = drain(s).await;
        assert_eq!(out, b"hello");
        assert!(err.is_none());
    }

    #[tokio::test]
    async fn wrong_digest_fails_at_the_end() {
        let s = BlobStream::new(chunks(&[b"hello"]), Digest::of(b"HELLO"), 5, "t");
        let (out, err) = drain(s).await;
        assert_eq!(out, b"hello");
        assert!(
            matches!(err, Some(RegistryError::DigestMismatch { found, .. }) if found == Digest::of(b"hello"))
        );
    }

    #[tokio::test]
    async fn short_content_fails() {
        let s = BlobStream::new(chunks(&[b"hell"]), Digest::of(b"hello"), 5, "t");
        let (_, err) = drain(s).await;
        assert!(matches!(
            err,
            Some(RegistryError::SizeMismatch {
                expected: 5,
                found: 4,
                more: false,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn long_content_fails_fast() {
        let s = BlobStream::new(
            chunks(&[b"hel", b"lo!", b"never read"]),
            Digest::of(b"hello"),
            5,
            "t",
        );
        let (out, err) = drain(s).await;
        assert_eq!(out, b"hel", "the chunk that overflows is not passed on");
        assert!(matches!(
            err,
            Some(RegistryError::SizeMismatch {
                expected: 5,
                found: 6,
                more: true,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn inner_errors_end_the_stream() {
        let inner = stream::iter(vec![
            Ok(Bytes::from_static(b"he")),
            Err(RegistryError::Pagination {
                url: "u".into(),
                reason: "x".into(),
            }),
            Ok(Bytes::from_static(b"llo")),
        ]);
        let (out, err) = drain(BlobStream::new(inner, Digest::of(b"hello"), 5, "t")).await;
        assert_eq!(out, b"he");
        assert!(matches!(err, Some(RegistryError::Pagination { .. })));
    }
}
