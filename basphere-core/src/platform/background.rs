//! The platform's background duties in one process: the operation sweeper (work left by a
//! process that died, or queued while every worker was busy), the outbox dispatcher, and
//! reconciliation, which one replica at a time does under the `reconcile` duty, and the
//! removal of browser sessions that ended a day ago.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Platform;

/// The name of the duty whose holder reconciles.
pub const RECONCILE_DUTY: &str = "reconcile";

/// The name of the duty whose holder follows the clusters' status.
pub const CLUSTER_STATUS_DUTY: &str = "cluster-status";

/// The running background tasks; dropping this stops them.
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Stops every task now (running operations are not affected: drain those with
    /// [`Runtime::drain`](crate::runtime::Runtime::drain)).
    pub fn stop(self) {}
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Platform {
    /// Starts the background duties of this process.
    pub fn start_background(self: &Arc<Self>) -> Background {
        let mut tasks = Vec::new();

        let sweeper = self.clone();
        tasks.push(tokio::spawn(async move {
            // Often enough that an expired claim is found soon after it expires.
            let every = Duration::from_millis((sweeper.config().work.lease_seconds * 1000 / 2).clamp(200, 5000));
            loop {
                if let Err(error) = sweeper.rt.sweep_operations().await {
                    tracing::warn!(%error, "looking for operations to resume failed; trying again");
                }
                tokio::time::sleep(every).await;
            }
        }));

        let janitor = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(3600));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = janitor.credentials.forget_old_web_sessions().await {
                    tracing::warn!(%error, "removing ended browser sessions failed; trying again in an hour");
                }
            }
        }));

        let dispatcher = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let ready = dispatcher.rt.outbox_ready.notified();
                match dispatcher.rt.dispatch_outbox().await {
                    Ok(0) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ready).await;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "delivering notifications failed; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));

        let follower = self.clone();
        tasks.push(tokio::spawn(async move {
            let hold = chrono::Duration::seconds(60);
            loop {
                let on_duty = follower.rt.claim_duty(CLUSTER_STATUS_DUTY, hold).await;
                match on_duty {
                    Ok(true) => {
                        if let Err(error) = follower.clusters.refresh_statuses().await {
                            tracing::warn!(%error, "following the clusters' status failed; trying again");
                        }
                        // Woken by the backend's watch, or every 15 s at the latest.
                        follower.cluster_backend.changed(Duration::from_secs(15)).await;
                    }
                    Ok(false) => tokio::time::sleep(Duration::from_secs(20)).await,
                    Err(error) => {
                        tracing::warn!(%error, "claiming the cluster-status duty failed; trying again");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }));

        let interval = self.config().reconcile_interval_seconds;
        if interval > 0 {
            let reconciler = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(interval));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    reconciler.reconcile_if_on_duty(interval).await;
                }
            }));
        }
        Background { tasks }
    }

    /// Reconciles if this process holds (or takes) the reconcile duty; one replica at a time.
    async fn reconcile_if_on_duty(&self, interval: u64) {
        let hold = chrono::Duration::seconds((interval * 3) as i64);
        let on_duty = self.rt.claim_duty(RECONCILE_DUTY, hold).await;
        match on_duty {
            Ok(true) => match self.vms.reconcile().await {
                Ok(report) => {
                    if !report.lost.is_empty() || !report.power_changed.is_empty() || !report.found.is_empty() {
                        tracing::info!(
                            lost = report.lost.len(),
                            power_changed = report.power_changed.len(),
                            found = report.found.len(),
                            strays = report.strays.len(),
                            "reconciled with the VM backend"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "reconciliation failed; trying again at the next interval"),
            },
            Ok(false) => tracing::debug!("another replica reconciles"),
            Err(error) => tracing::warn!(%error, "the reconcile duty could not be checked"),
        }
    }
}
