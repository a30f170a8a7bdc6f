//! Rate limits of the bulk stage: documents/s and bytes/s, with `governor`.
//!
//! The limiter runs on a clock read from `tokio::time`, and waits with
//! `tokio::time::sleep`, so that tests can drive it with paused time.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{Quota, RateLimiter};

/// A `governor` clock on tokio's time: instants are durations since the
/// limiter was built.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }
}

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// One limit: `per_second` cells per second, bursts up to one second's worth.
struct Limit {
    limiter: Limiter,
    clock: TokioClock,
    burst: u32,
}

impl Limit {
    fn new(per_second: u64) -> Limit {
        let burst = per_second.clamp(1, u32::MAX as u64) as u32;
        let quota = Quota::per_second(NonZeroU32::new(burst).expect("clamped to >= 1"));
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        Limit {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            burst,
        }
    }

    /// Waits until `n` cells may pass, in pieces no larger than the burst.
    async fn acquire(&self, mut n: u64) {
        while n > 0 {
            let piece = n.min(self.burst as u64) as u32;
            let cells = NonZeroU32::new(piece).expect("piece > 0");
            loop {
                match self.limiter.check_n(cells) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await
                    }
                    // Cannot happen: pieces never exceed the burst.
                    Err(_) => break,
                }
            }
            n -= piece as u64;
        }
    }
}

/// The limits of one run; either may be absent.
#[derive(Default)]
pub struct RateLimits {
    docs: Option<Limit>,
    bytes: Option<Limit>,
}

impl RateLimits {
    pub fn new(docs_per_second: Option<u64>, bytes_per_second: Option<u64>) -> RateLimits {
        RateLimits {
            docs: docs_per_second.filter(|r| *r > 0).map(Limit::new),
            bytes: bytes_per_second.filter(|r| *r > 0).map(Limit::new),
        }
    }

    /// Waits until a request of `docs` documents and `bytes` bytes may go.
    pub async fn acquire(&self, docs: u64, bytes: u64) {
        if let Some(l) = &self.docs {
            l.acquire(docs).await;
        }
        if let Some(l) = &self.bytes {
            l.acquire(bytes).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn documents_per_second_are_enforced() {
        let limits = RateLimits::new(Some(1000), None);
        let start = tokio::time::Instant::now();
        // 5000 documents in requests of 500 at 1000/s: the first second's
        // burst passes at once, the other 4000 take 4 s.
        for _ in 0..10 {
            limits.acquire(500, 1_000_000).await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(3900), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(4100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_per_second_split_requests_larger_than_the_burst() {
        let limits = RateLimits::new(None, Some(1_000_000));
        let start = tokio::time::Instant::now();
        // One 10 MB request at 1 MB/s: about 9 s after the first burst.
        limits.acquire(1, 10_000_000).await;
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(8900), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(9100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_never_waits() {
        let limits = RateLimits::new(None, Some(0));
        let start = tokio::time::Instant::now();
        limits.acquire(1_000_000, 1 << 40).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
