//! A block's request body, handed to the HTTP client as a stream so that cutover sees every
//! chunk leave: that drives the byte-level progress, the stall watchdog (a request that
//! moves no byte for a while is abandoned and retried, however long the block takes in
//! total on a slow line) and the optional bandwidth cap (`max_upload_mbps`), which paces the
//! chunks of all blocks together.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use azure_core::stream::SeekableStream;
use azure_core::Bytes;

/// How much of a block the HTTP client pulls at a time.
const CHUNK: usize = 64 * 1024;

/// A shared cap on upload bandwidth: a virtual clock that every chunk pushes forward by its
/// transmission time at the cap; a sender ahead of the clock waits. No credit builds up while
/// idle, so there are no bursts above the cap after a pause.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: f64,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A cap of `mbps` megabits per second (as AzCopy's `--cap-mbps`); `None` for a
    /// non-positive or non-finite value.
    pub fn from_mbps(mbps: f64) -> Option<RateLimiter> {
        (mbps.is_finite() && mbps > 0.0).then(|| RateLimiter {
            bytes_per_sec: mbps * 1_000_000.0 / 8.0,
            next_free: Mutex::new(None),
        })
    }

    /// Books `bytes` for sending; returns how long the caller should wait before sending more.
    pub fn reserve(&self, bytes: usize) -> Duration {
        let now = Instant::now();
        let mut next = self
            .next_free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = next.map_or(now, |t| t.max(now));
        let end = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        *next = Some(end);
        end.saturating_duration_since(now)
    }
}

/// Counters of one upload, shared by all its block bodies.
#[derive(Debug, Default)]
pub struct Throughput {
    /// Body bytes the HTTP client pulled (sent or about to be), over all attempts.
    pub sent: AtomicU64,
}

/// When one request last moved a byte, for the stall watchdog.
#[derive(Debug)]
pub struct Liveness {
    origin: Instant,
    /// Milliseconds after `origin` of the last chunk pulled (or of the attempt's start).
    last_ms: AtomicU64,
    /// Body bytes of this attempt pulled so far.
    pulled: AtomicU64,
}

impl Liveness {
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            pulled: AtomicU64::new(0),
        })
    }

    fn touch(&self, bytes: usize) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
        self.pulled.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Time since the request last moved a byte.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Body bytes this attempt handed to the network.
    pub fn pulled(&self) -> u64 {
        self.pulled.load(Ordering::Relaxed)
    }
}

/// One block's body: reads from the block's buffer in chunks, counts them, and waits when
/// the rate limiter says so. Cloning (the SDK may, to retry) starts a fresh wait state.
pub struct PacedBody {
    data: Bytes,
    position: usize,
    limiter: Option<Arc<RateLimiter>>,
    throughput: Arc<Throughput>,
    liveness: Arc<Liveness>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PacedBody {
    pub fn new(
        data: Bytes,
        limiter: Option<Arc<RateLimiter>>,
        throughput: Arc<Throughput>,
        liveness: Arc<Liveness>,
    ) -> PacedBody {
        PacedBody {
            data,
            position: 0,
            limiter,
            throughput,
            liveness,
            wait: None,
        }
    }
}

impl Clone for PacedBody {
    fn clone(&self) -> Self {
        PacedBody {
            data: self.data.clone(),
            position: self.position,
            limiter: self.limiter.clone(),
            throughput: Arc::clone(&self.throughput),
            liveness: Arc::clone(&self.liveness),
            wait: None,
        }
    }
}

impl std::fmt::Debug for PacedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedBody")
            .field("len", &self.data.len())
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl futures::io::AsyncRead for PacedBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(wait) = this.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.wait = None;
        }
        let n = buf.len().min(CHUNK).min(this.data.len() - this.position);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        buf[..n].copy_from_slice(&this.data[this.position..this.position + n]);
        this.position += n;
        this.throughput.sent.fetch_add(n as u64, Ordering::Relaxed);
        this.liveness.touch(n);
        if let Some(limiter) = &this.limiter {
            let delay = limiter.reserve(n);
            if !delay.is_zero() {
                this.wait = Some(Box::pin(tokio::time::sleep(delay)));
            }
        }
        Poll::Ready(Ok(n))
    }
}

#[async_trait::async_trait]
impl SeekableStream for PacedBody {
    async fn reset(&mut self) -> azure_core::Result<()> {
        self.position = 0;
        self.wait = None;
        Ok(())
    }

    fn len(&self) -> Option<u64> {
        Some(self.data.len() as u64)
    }

    fn buffer_size(&self) -> usize {
        CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_spaces_reservations_at_the_cap() {
        // 8 Mbit/s = 1,000,000 bytes/s: 100 kB books 100 ms.
        let limiter = RateLimiter::from_mbps(8.0).unwrap();
        let first = limiter.reserve(100_000);
        let second = limiter.reserve(100_000);
        assert!(first <= Duration::from_millis(100), "{first:?}");
        assert!(
            second > Duration::from_millis(150) && second <= Duration::from_millis(200),
            "{second:?}"
        );
        assert!(RateLimiter::from_mbps(0.0).is_none());
        assert!(RateLimiter::from_mbps(f64::NAN).is_none());
    }

    #[tokio::test]
    async fn body_yields_the_block_in_chunks_and_counts_them() {
        use futures::io::AsyncReadExt;
        let data = Bytes::from(vec![7u8; 200_000]);
        let throughput = Arc::new(Throughput::default());
        let liveness = Liveness::new();
        let mut body = PacedBody::new(data, None, throughput.clone(), liveness.clone());
        let mut out = Vec::new();
        body.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 200_000);
        assert_eq!(throughput.sent.load(Ordering::Relaxed), 200_000);
        assert_eq!(liveness.pulled(), 200_000);
        body.reset().await.unwrap();
        let mut again = Vec::new();
        body.read_to_end(&mut again).await.unwrap();
        assert_eq!(again, out);
    }
}
