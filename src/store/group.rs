//! Group commit: writes that arrive while another batch is committing wait for it, then
//! run together in one SQLite transaction and share one fsync. Each write runs inside
//! its own savepoint, so one write's refusal undoes only that write; each caller gets
//! its own result only after the transaction holding it committed.
//!
//! Leader and followers, no thread of its own: the first writer to find the connection
//! free commits everything queued, itself included; the others sleep until their result
//! is in (or the connection is free again and one of them leads the next batch).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Transaction;

use super::{Change, Result, StoreError};

/// One write: what it touches and the work, owning its data.
pub(super) type Work = Box<dyn Fn(&Transaction<'_>) -> Result<u64> + Send>;

pub(super) struct Job {
    id: u64,
    pub(super) change: Change,
    pub(super) work: Work,
}

impl Job {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    #[cfg(test)]
    pub(super) fn run(&self, tx: &Transaction<'_>) -> Result<u64> {
        (self.work)(tx)
    }

    #[cfg(test)]
    pub(super) fn new(id: u64, change: Change, work: Work) -> Job {
        Job { id, change, work }
    }
}

#[derive(Default)]
struct State {
    queue: Vec<Job>,
    /// A batch is being committed.
    busy: bool,
    /// Results not yet taken by their callers.
    done: HashMap<u64, Result<u64>>,
    next: u64,
}

/// The queue of writes and their results.
#[derive(Default)]
pub(super) struct Group {
    state: Mutex<State>,
    wake: Condvar,
}

/// Resets `busy` (and answers the batch) even if the commit unwinds, so the followers
/// never sleep forever.
struct Leading<'a> {
    group: &'a Group,
    ids: Vec<u64>,
    results: Option<Vec<(u64, Result<u64>)>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut st = self.group.lock();
        st.busy = false;
        match self.results.take() {
            Some(r) => st.done.extend(r),
            None => {
                for id in &self.ids {
                    st.done.insert(
                        *id,
                        Err(StoreError::Task("the commit of this write failed".into())),
                    );
                }
            }
        }
        drop(st);
        self.group.wake.notify_all();
    }
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `work` and return its result once committed (or refused). `commit` runs a
    /// batch: it gets the jobs in arrival order and returns one result per job.
    pub(super) fn write(
        &self,
        change: Change,
        work: Work,
        commit: impl Fn(Vec<Job>) -> Vec<(u64, Result<u64>)>,
    ) -> Result<u64> {
        let mut st = self.lock();
        let id = st.next;
        st.next += 1;
        st.queue.push(Job { id, change, work });
        loop {
            if let Some(r) = st.done.remove(&id) {
                return r;
            }
            if !st.busy {
                st.busy = true;
                let jobs = std::mem::take(&mut st.queue);
                drop(st);
                let mut lead = Leading {
                    group: self,
                    ids: jobs.iter().map(|j| j.id).collect(),
                    results: None,
                };
                lead.results = Some(commit(jobs));
                drop(lead);
                st = self.lock();
                continue;
            }
            st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn queued(g: &Group) -> usize {
        g.lock().queue.len()
    }

    #[test]
    fn writes_that_arrive_during_a_commit_share_the_next_one() {
        let g = Arc::new(Group::default());
        let batches = Arc::new(Mutex::new(Vec::<usize>::new()));
        let (started_tx, started) = mpsc::channel::<()>();
        let (go, go_rx) = mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        let commit = {
            let batches = batches.clone();
            move |jobs: Vec<Job>| {
                let first = batches.lock().unwrap().is_empty();
                batches.lock().unwrap().push(jobs.len());
                if first {
                    started_tx.send(()).unwrap();
                    go_rx
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(10))
                        .unwrap();
                }
                jobs.into_iter()
                    .map(|j| (j.id, Ok(j.change.network.len() as u64)))
                    .collect()
            }
        };
        let commit = Arc::new(Mutex::new(commit));
        let spawn = |n: &str| {
            let (g, commit, n) = (g.clone(), commit.clone(), n.to_owned());
            std::thread::spawn(move || {
                let work: Work = Box::new(|_| Ok(0));
                g.write(Change::network(&n), work, |jobs| {
                    (commit.lock().unwrap())(jobs)
                })
            })
        };
        let a = spawn("a");
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        let b = spawn("bb");
        let c = spawn("ccc");
        let deadline = Instant::now() + Duration::from_secs(10);
        while queued(&g) < 2 {
            assert!(Instant::now() < deadline, "the writers never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
        go.send(()).unwrap();
        let results: Vec<u64> = [a, b, c]
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert_eq!(*batches.lock().unwrap(), vec![1, 2]);
        // Each caller got its own result.
        assert_eq!(results, vec![1, 2, 3]);
    }
}
