//! The platform's own threads for store calls. The `Store` trait is synchronous; its calls run
//! here, off the async workers, on as many threads as the store serves calls at once
//! ([`Store::blocking_calls`](crate::Store::blocking_calls)). Further calls wait in the queue
//! as tasks, and the number of threads never grows under load: handed to the runtime's
//! blocking pool instead, a burst of writes to one SQLite writer started a thread per waiting
//! call (up to the pool's cap), each with its stack and allocator caches.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct StoreThreads {
    jobs: mpsc::Sender<Job>,
}

impl StoreThreads {
    /// Starts `count` threads (at least one); they end when this is dropped and the calls
    /// queued before have run.
    pub(crate) fn start(count: usize) -> StoreThreads {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..count.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("basphere-store-{index}"))
                .spawn(move || loop {
                    let job = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
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
        let threads = Arc::new(StoreThreads::start(2));
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
}
