//! The CPU time of one plugin call: what the threads that polled the call's future used while
//! they polled it. wasmtime runs the plugin inside that future, and so does the host's
//! capability code the plugin calls (encoding an attachment into the stream, TLS); tokio may
//! poll it on a different worker thread each time, so each poll reads its own thread's CPU
//! clock before and after. Waiting is never counted: not for a server, not for a CPU on a busy
//! machine, since a future that waits is not being polled.
//!
//! It must never count wall time on unix: that is what stopped healthy plugins when eight sends
//! shared two cores. Elsewhere there is no per-thread CPU clock in std, and it falls back to the
//! call's elapsed time minus the time spent in host I/O ([`HostState::host_io`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
#[cfg(unix)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
#[cfg(not(unix))]
use std::time::Instant;

use crate::capability::HostState;

/// One call's CPU account, shared by its metered future and its epoch callback.
#[derive(Clone)]
pub(super) struct CallCpu(Arc<Account>);

struct Account {
    /// Nanoseconds of thread CPU time used by finished polls.
    #[cfg(unix)]
    nanos: AtomicU64,
    #[cfg(not(unix))]
    started: Instant,
}

impl CallCpu {
    pub(super) fn new() -> Self {
        Self(Arc::new(Account {
            #[cfg(unix)]
            nanos: AtomicU64::new(0),
            #[cfg(not(unix))]
            started: Instant::now(),
        }))
    }

    /// `call`, with the CPU time of each of its polls added to this account.
    pub(super) fn metered<F: Future>(&self, call: F) -> Metered<F> {
        Metered {
            call: Box::pin(call),
            account: self.clone(),
        }
    }

    /// The CPU time used so far. The poll in progress is not in it yet; the epoch callback
    /// yields on every tick, so that is at most one tick of the plugin's code.
    pub(super) fn used(&self, state: &HostState) -> Duration {
        #[cfg(unix)]
        {
            let _ = state;
            Duration::from_nanos(self.0.nanos.load(Ordering::Relaxed))
        }
        #[cfg(not(unix))]
        {
            self.0
                .started
                .elapsed()
                .saturating_sub(state.host_io.total())
        }
    }
}

/// A call's future that adds the CPU time of each poll to its [`CallCpu`].
pub(super) struct Metered<F> {
    call: Pin<Box<F>>,
    #[cfg_attr(not(unix), allow(dead_code))]
    account: CallCpu,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        #[cfg(unix)]
        {
            let before = thread_cpu();
            let polled = self.call.as_mut().poll(cx);
            let spent = thread_cpu().saturating_sub(before);
            let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
            self.account.0.nanos.fetch_add(nanos, Ordering::Relaxed);
            polled
        }
        #[cfg(not(unix))]
        {
            self.call.as_mut().poll(cx)
        }
    }
}

/// The CPU time the current thread has used.
#[cfg(unix)]
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A future that burns `cpu` of CPU time, then waits `wait` of wall time, then is done.
    async fn burn_then_wait(cpu: Duration, wait: Duration) {
        let started = thread_cpu();
        while thread_cpu().saturating_sub(started) < cpu {
            std::hint::black_box(0u64);
        }
        tokio::time::sleep(wait).await;
    }

    #[tokio::test]
    async fn waiting_is_not_counted_and_computing_is() {
        let cpu = CallCpu::new();
        cpu.metered(burn_then_wait(
            Duration::from_millis(50),
            Duration::from_millis(300),
        ))
        .await;
        let used = Duration::from_nanos(cpu.0.nanos.load(Ordering::Relaxed));
        assert!(used >= Duration::from_millis(50), "{used:?}");
        assert!(used < Duration::from_millis(200), "{used:?}");
    }
}
