//! The allocator's settings for a long-running server (glibc's malloc).
//!
//! glibc gives each thread that allocates an arena of its own, up to eight per core, and keeps
//! what is freed for reuse instead of handing it back to the system. A server whose work is
//! short requests spread over two workers and a pool of store threads pays for that in memory
//! it keeps for nothing: the start-up reconcile of 10,000 VMs leaves megabytes free in the heap,
//! and each arena keeps its own free space. So:
//! - two arenas at most ([`limit_arenas`], before the first thread starts), and
//! - what is free handed back every few seconds ([`give_back_free_memory`]): a walk of the free
//!   lists, well under a millisecond, that returns whole free pages.

/// At most two malloc arenas, shared by the server's threads; `MALLOC_ARENA_MAX` in the
/// environment (glibc's own setting) is left to decide instead when it is set.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        glibc::set_arena_max(2);
    }
}

/// Hands the heap's free pages back to the system, every `every`, for as long as the runtime runs.
pub fn give_back_free_memory(every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            glibc::trim();
        }
    })
}

/// The two glibc calls: the only unsafe code of the workspace.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    pub(super) fn set_arena_max(arenas: i32) {
        // SAFETY: mallopt only changes malloc's parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }

    pub(super) fn trim() {
        // SAFETY: malloc_trim takes malloc's own locks; it frees nothing that is in use.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
