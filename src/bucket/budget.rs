//! The byte budget every model shares (`--max-bytes-in-flight`): a file
//! holds a [`Reservation`] from the moment its body is about to be read
//! until its write commits, so a pass's memory is bounded by the bytes in
//! flight rather than by files in flight times the size of an object.
//!
//! A reservation is sized to what the file really costs at its peak, the
//! body plus its parsed records plus their COPY bytes
//! ([`Budget::footprint`], measured by `tests/memory.rs`), and shrinks to
//! what the plan keeps once the body and the records are dropped
//! ([`retained`]). A request larger
//! than the whole budget is cut to the budget: that file still goes
//! through, alone. A body whose size is unknown until it is in (gzip, or
//! no length declared) starts at what it is on the wire and grows while
//! the bytes are free ([`Budget::try_grow`]); when they are not, it is
//! dropped and fetched again once a share of the size it showed is free.
//! Nothing is held across a wait for more, so reservations cannot
//! deadlock, and every byte of a body is always inside the budget.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::{WritePlan, WriteStrategy};

/// Default `--max-bytes-in-flight`: 512 MiB. Every file of a bucket like
/// the original one (about 300 kB a file, 1 MB reserved) can be in flight
/// at the default concurrency of 256, and two objects of 65 MB overlap
/// (one parsing while the other is written), which is what two cores can
/// use; small enough to run beside PostgreSQL on a laptop or in a 1 GB
/// container.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: u64 = 512 << 20;

/// A file's peak while it is parsed and planned, in bytes per byte of
/// body: the body, its records and their rows to send all live at once.
/// Measured with a counting allocator on the `seed` profile's records
/// (`tests/memory.rs`, which fails if a factor falls below the truth):
/// with the borrowing parser 3.31 for `copy` and 3.96 for `batch`
/// (`insert` was 4.51 before it); rounded up, for records heavier than those.
pub fn peak_per_body_byte(write: WriteStrategy) -> f64 {
    match write {
        WriteStrategy::Copy => 3.5,
        WriteStrategy::Batch => 4.5,
        WriteStrategy::Insert => 6.0,
    }
}

/// What a plan of the `insert` or `batch` strategy keeps until it is
/// written, per byte of body: boxed parameters (measured at 2.17 and 0.92;
/// `copy` plans are measured exactly, by their buffers).
const STATEMENTS_PER_BODY_BYTE: u64 = 3;

/// Budget accounting granularity: one semaphore permit per KiB, so a
/// budget of up to 4 TiB fits tokio's `u32` permit counts.
const UNIT: u64 = 1024;

/// What `plan` holds until it is written, in bytes: its COPY buffers, or
/// its boxed parameters for the statement strategies.
pub fn retained(plan: &WritePlan) -> u64 {
    let copies: usize = plan.copies.iter().map(|c| c.data.capacity()).sum();
    let statements = if plan.statements.is_empty() {
        0
    } else {
        (plan.size_bytes.max(0) as u64).saturating_mul(STATEMENTS_PER_BODY_BYTE)
    };
    copies as u64 + statements + 4 * UNIT
}

/// Makes memory a file gives back to the budget go back to the system too,
/// or the budget would bound what is live but not the process: glibc keeps
/// freed memory in per-thread arenas (up to eight per core), so each of
/// the 32 `threads` parsing one large file in turn left its share behind
/// (914 MB peak RSS for nine 65 MB files under a 256 MB budget; 278 MB
/// with this), and a fixed mmap threshold returns large buffers at once
/// (the default one rises with each large free, up to 32 MB). Applied once
/// per process; a no-op off glibc.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            // SAFETY: mallopt only tunes the allocator; arenas already in use stay valid.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, cores.min(64) as libc::c_int);
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        });
    }
}

/// A byte budget shared by every file of a pass. Clones share it.
#[derive(Clone, Debug)]
pub struct Budget {
    /// `None`: unlimited.
    inner: Option<(Arc<Semaphore>, u32)>,
    /// See [`peak_per_body_byte`].
    per_body_byte: f64,
    starved: Arc<Starved>,
}

/// Reservations waiting for bytes right now, and a signal each time one
/// starts to wait: the `async` writers stop waiting for more files to
/// share a transaction when the files they would wait for cannot be
/// fetched until something commits ([`Budget::until_starved`]).
#[derive(Debug, Default)]
struct Starved {
    waiting: std::sync::atomic::AtomicUsize,
    began: tokio::sync::Notify,
}

/// Counts one reservation as waiting while it lives, so a reservation
/// dropped while it waits (its task cancelled) stops counting too.
struct Waiting<'a>(&'a Starved);

impl<'a> Waiting<'a> {
    fn new(starved: &'a Starved) -> Self {
        starved
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        starved.began.notify_waiters();
        Waiting(starved)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::unlimited()
    }
}

impl Budget {
    /// A budget of `max_bytes` (0: unlimited) for files written with `write`.
    pub fn new(max_bytes: u64, write: WriteStrategy) -> Self {
        let inner = (max_bytes > 0).then(|| {
            let units = max_bytes.div_ceil(UNIT).min(u64::from(u32::MAX)) as u32;
            (Arc::new(Semaphore::new(units as usize)), units)
        });
        Budget {
            inner,
            per_body_byte: peak_per_body_byte(write),
            starved: Arc::default(),
        }
    }

    pub fn unlimited() -> Self {
        Budget::new(0, WriteStrategy::default())
    }

    /// What a body of `len` bytes costs at its peak, in bytes: what a file
    /// reserves before its body is read.
    pub fn footprint(&self, len: u64) -> u64 {
        (len as f64 * self.per_body_byte).ceil() as u64
    }

    /// Bytes not reserved right now (`None`: unlimited).
    pub fn available(&self) -> Option<u64> {
        self.inner
            .as_ref()
            .map(|(sem, _)| sem.available_permits() as u64 * UNIT)
    }

    /// Permits for `bytes`: rounded up, at least one, and at most the whole
    /// budget, so a file larger than the budget waits to go alone.
    fn units(total: u32, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, u64::from(total)) as u32
    }

    /// Waits until `bytes` are free, then holds them.
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        let Some((sem, total)) = &self.inner else {
            return Reservation::none();
        };
        let units = Self::units(*total, bytes);
        let permit = match sem.clone().try_acquire_many_owned(units) {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = Waiting::new(&self.starved);
                sem.clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("the budget's semaphore is never closed")
            }
        };
        Reservation {
            permit: Some(permit),
        }
    }

    /// Whether a file is waiting for bytes right now.
    pub fn starved(&self) -> bool {
        self.starved
            .waiting
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    }

    /// Returns once a file is waiting for bytes: at once if one is, else
    /// when one starts to wait (never, for an unlimited budget).
    pub async fn until_starved(&self) {
        let began = self.starved.began.notified();
        tokio::pin!(began);
        // Registered before the check, so a file that starts waiting in
        // between still wakes this.
        began.as_mut().enable();
        if self.starved() {
            return;
        }
        began.await;
    }

    /// [`Budget::reserve`] for blocking callers (the `sync` and `threads`
    /// models' threads).
    pub fn reserve_blocking(&self, bytes: u64) -> Reservation {
        if self.inner.is_none() {
            return Reservation::none();
        }
        futures::executor::block_on(self.reserve(bytes))
    }

    /// The first reservation of a body: `declared` bytes on the wire (for a
    /// gzip body, what it inflates from), or [`UNKNOWN_BODY`] when nothing
    /// is declared, or what an earlier fetch of it outgrew (`learnt`); a
    /// body whose size was not known grows as it arrives and inflates
    /// ([`Budget::try_grow`]). Reserving the limit instead, as it could
    /// grow to, made every such body wait for the whole budget: one at a
    /// time, and a stalled one held back every other file.
    pub fn first_share(&self, declared: Option<u64>, learnt: Option<u64>, limit: u64) -> u64 {
        let size = declared.max(learnt).unwrap_or(UNKNOWN_BODY);
        self.footprint(size.min(limit))
    }

    /// Whether `held` covers a body of `len` bytes: its footprint, or the
    /// whole budget, which a body larger than it holds to go alone.
    pub fn covers(&self, held: &Reservation, len: u64) -> bool {
        match &self.inner {
            None => true,
            Some((_, total)) => held.units() >= Self::units(*total, self.footprint(len)),
        }
    }

    /// The most bytes of body `held` covers (see [`Budget::covers`]).
    pub fn room(&self, held: &Reservation) -> u64 {
        match &self.inner {
            None => u64::MAX,
            Some((_, total)) if held.units() >= *total => u64::MAX,
            Some(_) => (held.bytes() as f64 / self.per_body_byte) as u64,
        }
    }

    /// Grows `held` to cover a body of `len` bytes, and then some (twice
    /// `len`, at most `limit`, so a body that keeps growing asks a few
    /// times, not once per chunk), if the bytes are free now; `false` when
    /// they are not.
    ///
    /// Never waits: a body that waited for more while holding what it has
    /// could wait for ever on another doing the same, and one that gave
    /// back what it held to wait would keep its bytes outside the budget
    /// while other bodies took their place (60 gzip bodies inflating to
    /// 250 MB each peaked at 4 GB under a 512 MiB budget that way). The
    /// caller drops the body instead and fetches it again with a first
    /// share of what it has learnt ([`Budget::first_share`]).
    pub fn try_grow(&self, held: &mut Reservation, len: u64, limit: u64) -> bool {
        let Some((sem, total)) = &self.inner else {
            return true;
        };
        if self.covers(held, len) {
            return true;
        }
        let want = Self::units(
            *total,
            self.footprint(len.saturating_mul(2).min(limit).max(len)),
        );
        let Ok(extra) = sem
            .clone()
            .try_acquire_many_owned(want.saturating_sub(held.units()))
        else {
            return false;
        };
        match &mut held.permit {
            Some(p) => p.merge(extra),
            None => held.permit = Some(extra),
        }
        true
    }
}

/// What a body of unknown length reserves before its first byte (see
/// [`Budget::first_share`]).
pub const UNKNOWN_BODY: u64 = 1 << 20;

/// Bytes held against a [`Budget`]; given back when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Holds nothing (an unlimited budget, or a file with no body).
    pub fn none() -> Self {
        Reservation { permit: None }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units()) * UNIT
    }

    fn units(&self) -> u32 {
        self.permit.as_ref().map_or(0, |p| p.num_permits() as u32)
    }

    /// Gives back all but `bytes` (rounded up to the accounting unit) at
    /// once, so other files can start; never grows.
    pub fn shrink_to(&mut self, bytes: u64) {
        if let Some(p) = &mut self.permit {
            let keep = bytes.div_ceil(UNIT).max(1) as usize;
            if keep < p.num_permits() {
                drop(p.split(p.num_permits() - keep));
            }
        }
    }
}

/// A value and the part of the budget it holds, given back when both are
/// dropped. Derefs to the value, so code that only reads it is unchanged.
#[derive(Debug)]
pub struct Held<T> {
    pub value: T,
    pub reservation: Reservation,
}

impl<T> Held<T> {
    pub fn new(value: T, reservation: Reservation) -> Self {
        Held { value, reservation }
    }

    /// A value that holds nothing.
    pub fn free(value: T) -> Self {
        Held::new(value, Reservation::none())
    }
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Parses a byte count for `--max-bytes-in-flight`: a plain number of
/// bytes, or one with a unit (`512MiB`, `1GiB`, `300MB`, `64k`); 0 means
/// unlimited.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (like 536870912, 512MiB or 1GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use B, kB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    Ok((n * scale as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn reservations_take_and_give_back_bytes() {
        let b = Budget::new(10 * MIB, WriteStrategy::Copy);
        let r = b.reserve_blocking(3 * MIB);
        assert_eq!(r.bytes(), 3 * MIB);
        assert_eq!(b.available(), Some(7 * MIB));
        drop(r);
        assert_eq!(b.available(), Some(10 * MIB));
    }

    #[test]
    fn shrinking_gives_back_the_excess_at_once() {
        let b = Budget::new(10 * MIB, WriteStrategy::Copy);
        let mut r = b.reserve_blocking(8 * MIB);
        r.shrink_to(MIB);
        assert_eq!((r.bytes(), b.available()), (MIB, Some(9 * MIB)));
        // Never grows.
        r.shrink_to(5 * MIB);
        assert_eq!(r.bytes(), MIB);
    }

    #[test]
    fn a_request_larger_than_the_budget_waits_to_go_alone() {
        let b = Budget::new(10 * MIB, WriteStrategy::Copy);
        let small = b.reserve_blocking(MIB);
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.reserve_blocking(100 * MIB).bytes())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "it waits for the budget to empty");
        drop(small);
        assert_eq!(waiter.join().unwrap(), 10 * MIB, "then holds all of it");
        assert_eq!(b.available(), Some(10 * MIB));
    }

    #[tokio::test]
    async fn async_waiters_are_served_in_order_as_bytes_come_back() {
        let b = Budget::new(4 * MIB, WriteStrategy::Copy);
        let first = b.reserve(3 * MIB).await;
        let (b2, b3) = (b.clone(), b.clone());
        let big = tokio::spawn(async move { b2.reserve(2 * MIB).await });
        tokio::task::yield_now().await;
        // Queued behind `big` even though a MiB is free: first come, first
        // served, so a large file is never starved by small ones.
        let small = tokio::spawn(async move { b3.reserve(MIB).await });
        tokio::task::yield_now().await;
        assert!(!big.is_finished() && !small.is_finished());
        drop(first);
        let (big, small) = (big.await.unwrap(), small.await.unwrap());
        assert_eq!((big.bytes(), small.bytes()), (2 * MIB, MIB));
    }

    #[test]
    fn a_body_grows_its_share_while_the_bytes_are_free_and_never_waits() {
        let b = Budget::new(100 * MIB, WriteStrategy::Copy);
        let mut held = b.reserve_blocking(b.first_share(None, None, 256 * MIB));
        assert_eq!(held.bytes(), b.footprint(MIB).div_ceil(UNIT) * UNIT);
        assert!(b.covers(&held, MIB) && !b.covers(&held, 2 * MIB));
        assert!(b.try_grow(&mut held, 3 * MIB, 256 * MIB));
        // Twice what it needs now, so a growing body asks a few times only.
        assert!(b.covers(&held, 6 * MIB) && !b.covers(&held, 7 * MIB));
        assert_eq!(b.available(), Some(100 * MIB - held.bytes()));
        // Another file holds the rest: no room, and nothing changes.
        let other = b.reserve_blocking(b.available().unwrap());
        let before = held.bytes();
        assert!(!b.try_grow(&mut held, 20 * MIB, 256 * MIB));
        assert_eq!((held.bytes(), b.available()), (before, Some(0)));
        drop(other);
        // Past the budget: all of it, to go alone, and then no more limit.
        assert!(b.try_grow(&mut held, 200 * MIB, 256 * MIB));
        assert_eq!((held.bytes(), b.room(&held)), (100 * MIB, u64::MAX));
        // A body fetched again starts from what it showed.
        let learnt = b.first_share(Some(10), Some(40 * MIB), 256 * MIB);
        assert_eq!(learnt, b.footprint(40 * MIB));
    }

    #[test]
    fn an_unlimited_budget_never_waits() {
        let b = Budget::new(0, WriteStrategy::Copy);
        assert_eq!(b.available(), None);
        assert_eq!(b.reserve_blocking(u64::MAX).bytes(), 0);
    }

    #[test]
    fn held_values_give_their_bytes_back_when_dropped() {
        let b = Budget::new(MIB, WriteStrategy::Copy);
        let held = Held::new(vec![1u8, 2, 3], b.reserve_blocking(MIB));
        assert_eq!((held.len(), b.available()), (3, Some(0)));
        drop(held);
        assert_eq!(b.available(), Some(MIB));
    }

    #[test]
    fn byte_counts_parse_with_or_without_units() {
        assert_eq!(parse_bytes("536870912"), Ok(512 * MIB));
        assert_eq!(parse_bytes("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("300MB"), Ok(300_000_000));
        assert_eq!(parse_bytes("1.5g"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }
}
