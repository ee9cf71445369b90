//! A change feed that never drops: each subscriber accumulates a set of changed keys
//! (duplicates coalesce) and is woken; a slow subscriber just gets a bigger set.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

struct Sub<T> {
    pending: Mutex<BTreeSet<T>>,
    notify: Notify,
}

/// The publishing side.
pub struct Feed<T> {
    subs: Mutex<Vec<Weak<Sub<T>>>>,
}

impl<T> Default for Feed<T> {
    fn default() -> Self {
        Feed {
            subs: Mutex::new(Vec::new()),
        }
    }
}

impl<T> std::fmt::Debug for Feed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Ord + Clone> Feed<T> {
    /// Tell every subscriber about `keys`.
    pub fn publish(&self, keys: impl IntoIterator<Item = T> + Clone) {
        lock(&self.subs).retain(|w| {
            let Some(s) = w.upgrade() else { return false };
            lock(&s.pending).extend(keys.clone());
            s.notify.notify_one();
            true
        });
    }

    /// A new subscriber (sees changes published from now on).
    pub fn subscribe(&self) -> FeedReceiver<T> {
        let sub = Arc::new(Sub {
            pending: Mutex::new(BTreeSet::new()),
            notify: Notify::new(),
        });
        lock(&self.subs).push(Arc::downgrade(&sub));
        FeedReceiver { sub }
    }
}

/// The receiving side.
pub struct FeedReceiver<T> {
    sub: Arc<Sub<T>>,
}

impl<T> std::fmt::Debug for FeedReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedReceiver").finish_non_exhaustive()
    }
}

impl<T: Ord> FeedReceiver<T> {
    /// Wait for changes and take all accumulated.
    ///
    /// # Cancel safety
    /// Cancel-safe: nothing is taken until it returns.
    pub async fn changed(&mut self) -> BTreeSet<T> {
        loop {
            let got = std::mem::take(&mut *lock(&self.sub.pending));
            if !got.is_empty() {
                return got;
            }
            self.sub.notify.notified().await;
        }
    }

    /// Take what accumulated, without waiting.
    pub fn try_changed(&mut self) -> BTreeSet<T> {
        std::mem::take(&mut *lock(&self.sub.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn coalesces_and_never_drops() {
        let f = Feed::default();
        let mut a = f.subscribe();
        for i in 0..1000 {
            f.publish([i % 10]);
        }
        assert_eq!(a.changed().await.len(), 10);
        assert!(a.try_changed().is_empty());
        drop(a);
        f.publish([1]);
        assert!(lock(&f.subs).is_empty());
    }
}
