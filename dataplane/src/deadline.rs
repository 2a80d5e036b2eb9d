//! Coarse deadlines for the data plane's waits ([`crate::io::within`]):
//! a wait that has to block registers in its core's list for a number of
//! ticks, and one ticker task per core wakes what expired.
//!
//! Why not a glommio `Timer` per wait: every request waits twice (for the
//! client's next head and for the app's response head), and a `Timer` costs
//! a clock read, an insert into and a removal from the reactor's ordered
//! map: ~1,500 instructions each, 5% of a small page's user-space cost
//! (`scripts/request-instructions`). The limits these waits enforce (header,
//! idle, response and body timeouts) are seconds, so a tick of
//! [`TICK`] is precise enough. Registering is a push into a free-list slab,
//! and a wait that ends unblocks by freeing its slot; no clock is read.
//!
//! A deadline never fires early: it expires `ceil(limit / TICK) + 1` ticks
//! after it was registered, at least `limit` later whatever the tick's phase
//! was. It may fire up to two ticks late, or later when the core is busy
//! (as a timer would). The ticker runs only while some wait is registered.

use std::cell::RefCell;
use std::task::Waker;
use std::time::Duration;

/// The deadlines' resolution.
pub const TICK: Duration = Duration::from_millis(50);

/// A registered deadline; dropping it unregisters.
pub struct Deadline {
    slot: usize,
}

/// One core's registered deadlines.
#[derive(Default)]
struct Wheel {
    /// Ticks since the core's first deadline.
    tick: u64,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Registered deadlines (waiting or fired, not yet dropped).
    live: usize,
    /// The ticker task is running.
    ticking: bool,
}

enum Slot {
    Free,
    Waiting { expires: u64, waker: Waker },
    Fired,
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::new(Wheel::default());
}

impl Deadline {
    /// A deadline `limit` from now that wakes `waker`. Must be called on a
    /// glommio executor (it may start the core's ticker there).
    pub fn register(limit: Duration, waker: &Waker) -> Deadline {
        let ticks = limit.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1;
        let (slot, start) = WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            let slot = Slot::Waiting {
                expires: w.tick.saturating_add(ticks),
                waker: waker.clone(),
            };
            let index = match w.free.pop() {
                Some(i) => {
                    w.slots[i] = slot;
                    i
                }
                None => {
                    w.slots.push(slot);
                    w.slots.len() - 1
                }
            };
            w.live += 1;
            let start = !w.ticking;
            w.ticking = true;
            (index, start)
        });
        if start {
            glommio::spawn_local(tick_while_registered()).detach();
        }
        Deadline { slot }
    }

    /// Whether the deadline passed; if not, `waker` is the one to wake.
    pub fn fired(&self, waker: &Waker) -> bool {
        WHEEL.with(|w| match &mut w.borrow_mut().slots[self.slot] {
            Slot::Fired => true,
            Slot::Waiting { waker: current, .. } => {
                if !current.will_wake(waker) {
                    *current = waker.clone();
                }
                false
            }
            Slot::Free => unreachable!("a registered deadline's slot is never free"),
        })
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            w.slots[self.slot] = Slot::Free;
            w.free.push(self.slot);
            w.live -= 1;
        });
    }
}

/// Advances the core's tick every [`TICK`] and wakes the expired waits;
/// ends when none is registered.
async fn tick_while_registered() {
    let mut expired = Vec::new();
    loop {
        glommio::timer::sleep(TICK).await;
        let more = WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            w.tick += 1;
            let now = w.tick;
            for slot in w.slots.iter_mut() {
                if matches!(slot, Slot::Waiting { expires, .. } if *expires <= now) {
                    if let Slot::Waiting { waker, .. } = std::mem::replace(slot, Slot::Fired) {
                        expired.push(waker);
                    }
                }
            }
            if w.live == 0 {
                w.ticking = false;
            }
            w.live > 0
        });
        // Woken outside the borrow: a woken task may register again.
        for waker in expired.drain(..) {
            waker.wake();
        }
        if !more {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::within;
    use std::time::Instant;

    /// Runs `f` on a small glommio executor of its own (io memory sized
    /// for the 8 MiB locked-memory limit).
    fn on_executor<T: Send + 'static>(
        f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 << 10)
            .ring_depth(64)
            .spawn(f)
            .expect("executor")
            .join()
            .expect("executor ran")
    }

    fn live() -> (usize, bool) {
        WHEEL.with(|w| {
            let w = w.borrow();
            (w.live, w.ticking)
        })
    }

    #[test]
    fn a_wait_that_outlives_its_limit_times_out_and_never_sooner() {
        let (outcome, waited, after) = on_executor(|| {
            Box::pin(async {
                let t0 = Instant::now();
                let never = std::future::pending::<std::io::Result<()>>();
                let outcome = within(Duration::from_millis(120), never).await;
                (outcome.map_err(|e| e.kind()), t0.elapsed(), live())
            })
        });
        assert_eq!(outcome, Err(std::io::ErrorKind::TimedOut));
        assert!(
            waited >= Duration::from_millis(120),
            "fired early: {waited:?}"
        );
        // The deadline was dropped with the wait.
        assert_eq!(after.0, 0);
    }

    #[test]
    fn a_wait_that_ends_in_time_returns_its_result_and_frees_its_slot() {
        let (outcome, during, after) = on_executor(|| {
            Box::pin(async {
                let (tx, rx) = async_channel_pair();
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                    tx.set(7);
                })
                .detach();
                let during = std::rc::Rc::new(std::cell::Cell::new((0, false)));
                let seen = during.clone();
                let outcome = within(Duration::from_secs(30), async {
                    std::future::poll_fn(|cx| {
                        seen.set(live());
                        rx.poll(cx)
                    })
                    .await
                })
                .await;
                // Let the ticker see the wheel empty and stop.
                let deadline = Instant::now() + Duration::from_secs(5);
                while live().1 && Instant::now() < deadline {
                    glommio::timer::sleep(TICK).await;
                }
                (outcome.map_err(|e| e.kind()), during.get(), live())
            })
        });
        assert_eq!(outcome, Ok(7));
        assert_eq!(during, (1, true), "registered while waiting");
        assert_eq!(after, (0, false), "freed, and the ticker stopped");
    }

    #[test]
    fn many_waits_each_fire_and_slots_are_reused() {
        let (timed_out, slots) = on_executor(|| {
            Box::pin(async {
                let mut timed_out = 0;
                for _round in 0..3 {
                    let waits: Vec<_> = (0..50)
                        .map(|k| {
                            glommio::spawn_local(within(
                                Duration::from_millis(10 * (k % 5)),
                                std::future::pending::<std::io::Result<()>>(),
                            ))
                        })
                        .collect();
                    for w in waits {
                        if w.await.is_err() {
                            timed_out += 1;
                        }
                    }
                }
                (timed_out, WHEEL.with(|w| w.borrow().slots.len()))
            })
        });
        assert_eq!(timed_out, 150);
        assert!(slots <= 50, "slots reused across rounds: {slots}");
    }

    /// A one-shot value a test task hands to another (no channel crate
    /// needed on one thread).
    fn async_channel_pair() -> (Sender, Receiver) {
        let cell = std::rc::Rc::new(std::cell::RefCell::new((None, None::<Waker>)));
        (Sender(cell.clone()), Receiver(cell))
    }

    type Shared = std::rc::Rc<std::cell::RefCell<(Option<u32>, Option<Waker>)>>;
    struct Sender(Shared);
    struct Receiver(Shared);

    impl Sender {
        fn set(self, v: u32) {
            let waker = {
                let mut c = self.0.borrow_mut();
                c.0 = Some(v);
                c.1.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    impl Receiver {
        fn poll(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<u32>> {
            let mut c = self.0.borrow_mut();
            match c.0.take() {
                Some(v) => std::task::Poll::Ready(Ok(v)),
                None => {
                    c.1 = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            }
        }
    }
}
