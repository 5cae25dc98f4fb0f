//! The wait for a request on an idle connection (`keepalive`), as hyper's header timer,
//! which stops at the first byte of a head: from there the head has `header_timeout` of
//! its own (strict.rs).
//!
//! hyper's `header_read_timeout` starts when the connection is ready for a request (its
//! start, or the end of the previous response) and runs until a whole head is parsed:
//! alone it would cut a head still arriving at `keepalive`, however recently its first
//! byte came. So each connection's builder gets a [`Timer`] whose sleeps look at the
//! connection's [`Heads`], a count of the heads begun and ended that `StrictIo` keeps: a
//! sleep armed while no head was in progress fires only if none has begun since. hyper's
//! server uses its timer for nothing else (HTTP/1.1 without client features); the tests
//! of both clocks (tests/http/test_limits.py) would see it if that changed.
//!
//! It does not read or cut the stream: strict.rs does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;

/// Heads of one connection: odd while one is in progress, bumped when one begins and when
/// it ends.
#[derive(Debug, Clone, Default)]
pub struct Heads(Arc<AtomicU32>);

impl Heads {
    pub fn began(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ended(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The connection's HTTP/1.1 settings, with its own idle clock.
pub fn builder_for(http: &http1::Builder, heads: Heads) -> http1::Builder {
    let mut http = http.clone();
    http.timer(IdleTimer(heads));
    http
}

struct IdleTimer(Heads);

impl Timer for IdleTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(IdleSleep {
            heads: self.0.clone(),
            armed_at: self.0.now(),
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        })
    }
}

/// Fires at its deadline unless a head began since it was armed (or was in progress).
struct IdleSleep {
    heads: Heads,
    armed_at: u32,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleSleep {
    fn idle_throughout(&self) -> bool {
        self.armed_at.is_multiple_of(2) && self.heads.now() == self.armed_at
    }
}

impl Future for IdleSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.idle_throughout() {
            // header_timeout's clock runs now; hyper drops this sleep once the head is in.
            return Poll::Pending;
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl Sleep for IdleSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a sleep of 1 ms, armed by `arm` and then left to `then`, fires within 50 ms.
    fn fires(heads: &Heads, then: impl FnOnce()) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let sleep = IdleTimer(heads.clone()).sleep(Duration::from_millis(1));
            then();
            tokio::time::timeout(Duration::from_millis(50), sleep)
                .await
                .is_ok()
        })
    }

    #[test]
    fn an_idle_connection_times_out() {
        assert!(fires(&Heads::default(), || {}));
    }

    #[test]
    fn a_head_begun_stops_the_idle_clock() {
        let heads = Heads::default();
        assert!(!fires(&heads, || heads.began()));
        // Armed while a pipelined head is half in: that head's own clock runs.
        assert!(!fires(&heads, || {}));
        heads.ended();
        assert!(fires(&heads, || {}));
    }
}
