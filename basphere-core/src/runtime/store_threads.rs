//! The platform's own threads for store calls. The `Store` trait is synchronous; its calls run
//! here, off the async workers, on as many threads as the store serves calls at once
//! ([`Store::blocking_calls`](crate::Store::blocking_calls)). Further calls wait in the queue
//! as tasks, and the number of threads never grows under load: handed to the runtime's
//! blocking pool instead, a burst of writes to one SQLite writer started a thread per waiting
//! call (up to the pool's cap), each with its stack and allocator caches.
//!
//! A thread that finds the queue empty runs the idle hook before it waits
//! ([`PlatformBuilder::on_thread_idle`](crate::platform::PlatformBuilder::on_thread_idle)): an allocator
//! with per-thread caches keeps what a call freed, or what was freed elsewhere of what the
//! call allocated (its answer), until the thread allocates again, which an idle thread never
//! does.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// What a thread runs when it runs out of work, before it waits for more.
pub type IdleHook = fn();

pub(crate) struct StoreThreads {
    jobs: mpsc::Sender<Job>,
}

impl StoreThreads {
    /// Starts `count` threads (at least one); they end when this is dropped and the calls
    /// queued before have run. Each runs `idle` whenever it finds no call waiting.
    pub(crate) fn start(count: usize, idle: Option<IdleHook>) -> StoreThreads {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..count.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("basphere-store-{index}"))
                .spawn(move || loop {
                    let next = || queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    // (The queue's lock is let go before the hook runs: a statement of its own.)
                    let waiting = next().try_recv();
                    let job = match waiting {
                        Ok(job) => Ok(job),
                        Err(mpsc::TryRecvError::Disconnected) => return,
                        Err(mpsc::TryRecvError::Empty) => {
                            if let Some(idle) = idle {
                                idle();
                            }
                            next().recv()
                        }
                    };
                    match job {
                        // A call that panics fails alone (its caller sees an error); the
                        // thread goes on with the next.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                })
                .expect("the system starts a thread for store calls");
        }
        StoreThreads { jobs }
    }

    /// Runs `f` on one of the threads and answers what it returned. A caller that stops
    /// waiting leaves the call to finish.
    pub(crate) async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(f());
            }))
            .map_err(|_| Error::backend("store", "the store's threads have stopped"))?;
        answered.await.map_err(|_| Error::backend("store", "a store call panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls run on the given number of threads, every one of them answered; a call that
    /// panics fails alone.
    #[tokio::test]
    async fn calls_run_on_the_threads_started_and_a_panic_fails_only_its_call() {
        let threads = Arc::new(StoreThreads::start(2, None));
        let names = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let mut calls = Vec::new();
        for n in 0..50u32 {
            let (threads, names) = (threads.clone(), names.clone());
            calls.push(tokio::spawn(async move {
                threads
                    .run(move || {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        names.lock().unwrap().insert(std::thread::current().name().unwrap_or_default().to_owned());
                        n * 2
                    })
                    .await
            }));
        }
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().unwrap(), n as u32 * 2);
        }
        let names = names.lock().unwrap().clone();
        assert_eq!(names, ["basphere-store-0", "basphere-store-1"].map(String::from).into_iter().collect());
        let failed = threads.run(|| -> u32 { panic!("a store call that panics") }).await.unwrap_err();
        assert_eq!(failed.kind(), "backend");
        assert_eq!(threads.run(|| 7).await.unwrap(), 7, "the thread goes on after a panic");
    }

    static IDLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn count_idle() {
        IDLE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A thread that finds the queue empty runs the idle hook before it waits; calls queued
    /// while one runs are run one after the other without it.
    #[test]
    fn a_thread_out_of_work_runs_the_idle_hook() {
        let idled = || IDLE.load(std::sync::atomic::Ordering::SeqCst);
        let wait_for = |count: usize| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while idled() < count && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        let threads = StoreThreads::start(1, Some(count_idle));
        wait_for(1);
        assert_eq!(idled(), 1, "idle once, at the start");
        let (started, running) = mpsc::channel();
        let (go, gate) = mpsc::channel::<()>();
        threads
            .jobs
            .send(Box::new(move || {
                started.send(()).unwrap();
                gate.recv().unwrap();
            }))
            .unwrap();
        running.recv().unwrap();
        let (done, finished) = mpsc::channel();
        for n in 0..5 {
            let done = done.clone();
            threads.jobs.send(Box::new(move || done.send(n).unwrap())).unwrap();
        }
        go.send(()).unwrap();
        assert_eq!((0..5).map(|_| finished.recv().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        wait_for(2);
        assert_eq!(idled(), 2, "idle again once the queue ran dry, not between the queued calls");
    }
}
