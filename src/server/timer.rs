//! Sleeping until an absolute deadline with sub-millisecond precision.
//!
//! Tokio's timer wheel has 1 ms resolution and rounds every deadline *up* to the next tick, so
//! a stream timed with `tokio::time::sleep_until` is late by 0–1 ms on every emission (about
//! +0.5 ms on TTFT on average) and in bursts when many deadlines share a tick. That is too
//! coarse for a reference server that must reproduce "TTFT 50 ms" within a fraction of a
//! millisecond. Spinning would be exact but burns a core per waiting stream.
//!
//! Instead one dedicated thread keeps a heap of (deadline, waker) and parks until the earliest
//! deadline (`park_timeout`, a futex wait on high-resolution kernel timers). It wakes every
//! task whose deadline has passed. Lateness is the kernel's timer slack (~50 µs by default on
//! Linux) plus the runtime's wake-up latency; it does not accumulate, because callers sleep to
//! absolute deadlines. If the thread cannot be started, sleeps fall back to tokio's timer.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// Sleep until `deadline` (monotonic, `std` clock) with ~50 µs precision.
pub fn sleep_until(deadline: Instant) -> PreciseSleep {
    PreciseSleep {
        deadline,
        registered: None,
        fallback: None,
    }
}

/// Future returned by [`sleep_until`]. Dropping it early is fine: the timer thread then wakes
/// a stale waker once, which does nothing.
pub struct PreciseSleep {
    deadline: Instant,
    registered: Option<Waker>,
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PreciseSleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        let Some(timer) = timer() else {
            let deadline = this.deadline;
            let sleep = this
                .fallback
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
            return sleep.as_mut().poll(cx);
        };
        let same_task = this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if !same_task {
            timer.register(this.deadline, cx.waker().clone());
            this.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Timer {
    heap: Arc<Mutex<Heap>>,
    thread: Thread,
}

fn lock(heap: &Mutex<Heap>) -> MutexGuard<'_, Heap> {
    // A panic while holding the lock cannot leave the heap inconsistent (push/pop are atomic
    // from our point of view), so a poisoned lock is still usable.
    heap.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Timer {
    fn register(&self, deadline: Instant, waker: Waker) {
        let earlier_than_all = {
            let mut heap = lock(&self.heap);
            let earliest = heap.entries.peek().map(|Reverse(e)| e.deadline);
            heap.seq += 1;
            let seq = heap.seq;
            heap.entries.push(Reverse(Entry {
                deadline,
                seq,
                waker,
            }));
            earliest.is_none_or(|d| deadline < d)
        };
        if earlier_than_all {
            // The thread may be parked until a later deadline; have it re-plan.
            self.thread.unpark();
        }
    }
}

fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<Timer>> = OnceLock::new();
    TIMER.get_or_init(start_timer).as_ref()
}

fn start_timer() -> Option<Timer> {
    let heap = Arc::new(Mutex::new(Heap::default()));
    let for_thread = Arc::clone(&heap);
    let handle = thread::Builder::new()
        .name("servebench-timer".into())
        .spawn(move || run_timer(&for_thread))
        .ok()?;
    Some(Timer {
        heap,
        thread: handle.thread().clone(),
    })
}

fn run_timer(heap: &Mutex<Heap>) {
    let mut due: Vec<Waker> = Vec::new();
    loop {
        let next = {
            let mut heap = lock(heap);
            let now = Instant::now();
            while heap
                .entries
                .peek()
                .is_some_and(|Reverse(e)| e.deadline <= now)
            {
                if let Some(Reverse(e)) = heap.entries.pop() {
                    due.push(e.waker);
                }
            }
            heap.entries.peek().map(|Reverse(e)| e.deadline)
        };
        // Wake outside the lock: waking schedules tasks that may register again at once.
        for waker in due.drain(..) {
            waker.wake();
        }
        match next {
            Some(deadline) => {
                let now = Instant::now();
                if deadline > now {
                    thread::park_timeout(deadline - now);
                }
            }
            None => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sleeps_until_the_deadline_and_not_before() {
        let start = Instant::now();
        let deadlines: Vec<Instant> = (1..=5u32)
            .map(|i| start + Duration::from_millis(3) * i)
            .collect();
        for d in &deadlines {
            sleep_until(*d).await;
            assert!(Instant::now() >= *d);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_sleeps_all_complete() {
        let start = Instant::now();
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let d = start + Duration::from_micros(100) * (i % 37);
                tokio::spawn(async move {
                    sleep_until(d).await;
                    Instant::now() >= d
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap_or(false));
        }
    }

    #[tokio::test]
    async fn a_dropped_sleep_does_not_disturb_later_ones() {
        let start = Instant::now();
        let early = sleep_until(start + Duration::from_millis(1));
        drop(early);
        let d = start + Duration::from_millis(2);
        sleep_until(d).await;
        assert!(Instant::now() >= d);
    }
}
