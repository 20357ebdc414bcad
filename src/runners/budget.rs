//! The byte budget of one apply (`settings.memory_budget_mb`): what every copy lane of every
//! step holds of mail bodies at once, counted before the bytes are read.
//!
//! A lane takes the sizes of a batch's messages (as the source listed them: RFC822.SIZE, the
//! POP3 `LIST` size, a file's size) before it fetches them, and gives them back once the
//! target acknowledged them and the state committed them. A lane that finds the budget spent
//! waits (cancellably) instead of allocating. A message larger than a lane's share
//! ([`ByteBudget::share`]) is not taken whole: it is streamed from source to target and takes
//! only [`STREAM_HOLD`] while in flight.
//!
//! Why a semaphore of KiB units: `tokio::sync::Semaphore` is fair (first come, first served:
//! a lane waiting for a large batch is not starved by small ones) and hands out up to
//! `u32::MAX` permits per acquire, which as KiB covers 4 TiB. A request is clamped to the whole
//! budget, so a batch never waits for more than the budget can ever give.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// What a message streamed from source to target holds while in flight: its piece buffer,
/// the connection's read buffer and TLS records on both sides, with room to spare.
pub const STREAM_HOLD: u64 = 2 << 20;

/// The divisor of a lane's share: a message larger than `budget / SHARES` is streamed. Eight
/// leaves room for two steps of four lanes each to hold one such message at once.
pub const SHARES: u64 = 8;

/// The budget shared by every step and lane of one apply. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    units: Arc<Semaphore>,
    total_units: u32,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl Held {
    /// Bytes this holds (after clamping to the budget).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

const UNIT: u64 = 1024;

impl ByteBudget {
    /// A budget of `megabytes` MiB (at least 16).
    pub fn new(megabytes: u32) -> ByteBudget {
        let bytes = u64::from(megabytes.max(16)) << 20;
        let total_units = u32::try_from(bytes / UNIT).unwrap_or(u32::MAX);
        ByteBudget {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.total_units) * UNIT
    }

    /// A lane's share: messages larger than this are streamed, never held whole.
    pub fn share(&self) -> u64 {
        self.total() / SHARES
    }

    /// Takes `bytes` (clamped to the whole budget), waiting until other lanes gave back
    /// enough. `None` when `cancel` fired first.
    pub async fn take(&self, bytes: u64, cancel: &CancellationToken) -> Option<Held> {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.total_units)) as u32;
        let acquire = Arc::clone(&self.units).acquire_many_owned(units);
        tokio::select! {
            permit = acquire => permit.ok().map(|p| Held {
                _permit: Some(p),
                bytes: u64::from(units) * UNIT,
            }),
            _ = cancel.cancelled() => None,
        }
    }

    /// Bytes not taken right now (for tests and progress).
    pub fn available(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn takes_wait_for_what_others_give_back_and_clamp_to_the_whole() {
        let budget = ByteBudget::new(16);
        let cancel = CancellationToken::new();
        assert_eq!(budget.total(), 16 << 20);
        assert_eq!(budget.share(), 2 << 20);
        let first = budget.take(12 << 20, &cancel).await.unwrap();
        assert_eq!(budget.available(), 4 << 20);
        // More than is left: waits until the first is given back.
        let b = budget.clone();
        let c = cancel.clone();
        let second = tokio::spawn(async move { b.take(8 << 20, &c).await.map(|h| h.bytes()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "waits while the budget is spent");
        drop(first);
        assert_eq!(second.await.unwrap(), Some(8 << 20));
        // More than the whole budget: clamped, so it never waits forever.
        let huge = budget.take(1 << 40, &cancel).await.unwrap();
        assert_eq!(huge.bytes(), 16 << 20);
        assert_eq!(budget.available(), 0);
        // Cancelled while waiting.
        let waiting = budget.take(1, &cancel);
        cancel.cancel();
        assert!(waiting.await.is_none());
    }
}
