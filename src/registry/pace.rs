//! [`Pace`]: the slowest a response body may arrive.
//!
//! The read timeout catches a connection that goes silent, not one that
//! trickles a byte every few seconds: such a body would keep a run going
//! forever. A body must bring [`MIN_BYTES`] in every [`WINDOW`] of time spent
//! waiting on the network. Only that waiting counts, not the time the reader
//! spent elsewhere (a download held back while the volume writer catches up
//! is not slow).

use std::time::Duration;

use reqwest::Url;
use tokio::time::Instant;

use super::RegistryError;

/// Time spent waiting on the network over which [`MIN_BYTES`] must come.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Bytes that must come in each [`WINDOW`] of waiting (about 1 KiB/s).
pub const MIN_BYTES: u64 = 64 << 10;

/// Bytes and network waiting since the window began.
#[derive(Debug)]
pub(crate) struct Pace {
    waited: Duration,
    bytes: u64,
}

impl Pace {
    /// A window beginning now.
    pub(crate) fn new() -> Self {
        Pace {
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// Awaits `next` (the next chunk of a body from `url`), counting the wait
    /// and the bytes it brought (`len`); [`RegistryError::TooSlow`] once a
    /// window of waiting brought fewer than [`MIN_BYTES`].
    pub(crate) async fn timed<T>(
        &mut self,
        url: &Url,
        next: impl std::future::Future<Output = T>,
        len: impl FnOnce(&T) -> usize,
    ) -> Result<T, RegistryError> {
        let start = Instant::now();
        let item = next.await;
        self.waited += start.elapsed();
        self.bytes += len(&item) as u64;
        if self.waited < WINDOW {
            return Ok(item);
        }
        if self.bytes < MIN_BYTES {
            return Err(RegistryError::TooSlow {
                url: url.to_string(),
                bytes: self.bytes,
                secs: self.waited.as_secs(),
            });
        }
        *self = Pace::new();
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:1/v2/r/blobs/x").expect("a URL")
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_after_a_window_of_waiting_and_a_steady_body_never() {
        let mut pace = Pace::new();
        let mut result = Ok(());
        for _ in 0..10 {
            // One byte every 20 s: under the read timeout, far under the floor.
            let r = pace
                .timed(&url(), tokio::time::sleep(Duration::from_secs(20)), |_| 1)
                .await;
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        match result {
            Err(RegistryError::TooSlow { bytes, secs, .. }) => {
                assert_eq!((bytes, secs), (3, 60));
            }
            other => panic!("expected TooSlow, got {other:?}"),
        }
        let mut pace = Pace::new();
        for _ in 0..100 {
            pace.timed(&url(), tokio::time::sleep(Duration::from_secs(20)), |_| {
                32 << 10
            })
            .await
            .expect("32 KiB every 20 s is slow but steady");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn time_not_spent_waiting_on_the_network_does_not_count() {
        let mut pace = Pace::new();
        for _ in 0..10 {
            // The reader is away for ten minutes between chunks that come at once.
            tokio::time::sleep(Duration::from_secs(600)).await;
            pace.timed(&url(), async {}, |_| 1).await.expect("not slow");
        }
    }
}
