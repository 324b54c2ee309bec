//! The allocators' settings for a long-running server.
//!
//! Rust's allocations go to mimalloc (`main.rs`); SQLite's go to glibc's malloc. Both keep
//! freed memory for reuse by default, which a server that spends its allocations on short
//! requests pays for in resident memory it holds for nothing. So:
//! - mimalloc commits its arenas as they are used, so that what it purges (a second after it
//!   is freed) is no longer resident; committed up front, an arena keeps every page it ever
//!   used. Its first arena is made by the first allocation, before `main`, so the binary sets
//!   this from its pre-initialisation array, which the loader runs before anything else
//!   ([`before_anything_else`]). Measured with 10,000 VMs after a start: 34 MiB of anonymous
//!   memory instead of 56, and 28 instead of 43 after the list runs; the list's CPU per request
//!   within the machine's noise.
//! - mimalloc purges (hands back) the pages it frees at once instead of a second later: a
//!   delayed purge waits for the allocator's next call after the delay, which an idle server
//!   may not make for a long time. Measured with 10,000 VMs, 1 s after a start: 50.6 MiB
//!   resident instead of 55.2 (what the start freed was given back only at the next activity).
//! - Every thread of the server's own collects its allocator's free memory when it runs out of
//!   work ([`collect_idle_thread`]: the runtime's workers before they park, the store's
//!   threads before they wait). A block freed by another thread than the one that allocated
//!   it (a store call's answer, freed by the request's worker) goes back to its page only when
//!   the owner next looks, and a thread idle after a burst does not look. Measured with 10,000
//!   VMs, after 200 concurrent creates: 53.8 MiB resident instead of 58.1, the same list CPU
//!   per request (146-151 us in both, three rounds each, wrk).
//! - glibc keeps two arenas at most (set there too), and the heap's free pages are handed back
//!   every 10 s ([`give_back_free_memory`], a walk of the free lists, well under a millisecond).

/// Sets both allocators up. Runs before any library's constructor and Rust's own start-up: it
/// allocates nothing and reads no environment, so these settings are fixed
/// (`MIMALLOC_ARENA_EAGER_COMMIT` and `MALLOC_ARENA_MAX` are not consulted).
pub extern "C" fn before_anything_else() {
    ffi::mimalloc_set(ffi::MI_ARENA_EAGER_COMMIT, 0);
    ffi::mimalloc_set(ffi::MI_PURGE_DELAY, 0);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    ffi::glibc_arena_max(2);
}

/// Gives the calling thread's free allocator memory back: blocks other threads freed into its
/// pages, its emptied pages. For a thread about to wait for work (a few microseconds).
pub fn collect_idle_thread() {
    ffi::mimalloc_collect();
}

/// Hands glibc's free heap pages back to the system, every `every`, while the runtime runs.
pub fn give_back_free_memory(every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            ffi::glibc_trim();
        }
    })
}

/// The allocators' foreign calls: the only unsafe code of the workspace.
#[allow(unsafe_code)]
mod ffi {
    /// mimalloc's option numbers (`mi_option_t` in the `mimalloc.h` that libmimalloc-sys
    /// vendors; it names only some as constants). The tests check them by their defaults.
    pub(super) const MI_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    pub(super) const MI_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

    pub(super) fn mimalloc_set(option: libmimalloc_sys::mi_option_t, value: i64) {
        // SAFETY: mi_option_set stores a number in mimalloc's static option table, nothing
        // else (it needs no initialised allocator); it is not thread safe, and runs before any
        // thread exists.
        unsafe { libmimalloc_sys::mi_option_set(option, value as _) }
    }

    pub(super) fn mimalloc_collect() {
        // SAFETY: collects the calling thread's own heap (not forced: no other thread's).
        unsafe { libmimalloc_sys::mi_collect(false) }
    }

    #[cfg(test)]
    pub(super) fn mimalloc_get(option: libmimalloc_sys::mi_option_t) -> i64 {
        // SAFETY: reads the option table.
        unsafe { libmimalloc_sys::mi_option_get(option) as i64 }
    }

    /// A block of mimalloc's, `size` bytes of `fill`, as an address (sendable to another thread).
    #[cfg(test)]
    pub(super) fn mimalloc_block(size: usize, fill: u8) -> usize {
        // SAFETY: a fresh allocation of `size` bytes, all written before its address escapes.
        unsafe {
            let block = libmimalloc_sys::mi_malloc(size) as *mut u8;
            assert!(!block.is_null());
            std::ptr::write_bytes(block, fill, size);
            block as usize
        }
    }

    /// Frees a block [`mimalloc_block`] made, on any thread.
    #[cfg(test)]
    pub(super) fn mimalloc_free(block: usize) {
        // SAFETY: `block` came from mi_malloc and is freed once.
        unsafe { libmimalloc_sys::mi_free(block as *mut std::ffi::c_void) }
    }

    /// How many bytes of the pages under `[at, at + len)` are resident (`mincore`).
    #[cfg(test)]
    pub(super) fn resident_bytes(at: usize, len: usize) -> usize {
        let page = 4096;
        let (start, end) = (at / page * page, (at + len).div_ceil(page) * page);
        let mut pages = vec![0u8; (end - start) / page];
        // SAFETY: the range is whole pages of a mapping the allocator made; mincore writes one
        // byte per page into `pages`, which has room for them.
        let status = unsafe { libc::mincore(start as *mut libc::c_void, end - start, pages.as_mut_ptr()) };
        assert_eq!(status, 0, "mincore: {}", std::io::Error::last_os_error());
        let first = at - start;
        let last = end - (at + len);
        let whole: usize = pages.iter().filter(|p| *p & 1 == 1).count() * page;
        // Count only the block's own bytes of its first and last page.
        let edge = |resident: bool, bytes: usize| if resident { bytes } else { 0 };
        whole - edge(pages[0] & 1 == 1, first) - edge(pages[pages.len() - 1] & 1 == 1, last)
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub(super) fn glibc_arena_max(arenas: i32) {
        // SAFETY: mallopt only changes malloc's parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub(super) fn glibc_trim() {
        // SAFETY: malloc_trim takes malloc's own locks; it frees nothing that is in use.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::ffi;

    /// The options are mimalloc's own: they read back as mimalloc's documented defaults (eager
    /// commit "2": on systems that overcommit, like Linux; purge delay 1 s). A renumbering in
    /// a newer mimalloc fails here instead of setting the wrong option. Then, with the server's
    /// settings: blocks one thread allocated (a few of each size, so that no page fills up and
    /// the thread keeps them all) and another thread freed stay resident until the first thread
    /// collects, and are given back when it does. (This test binary does not run the server's
    /// pre-initialisation, nor allocate through mimalloc otherwise.)
    #[test]
    fn the_options_are_the_ones_meant_and_an_idle_thread_gives_back_what_others_freed() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(ffi::mimalloc_get(ffi::MI_ARENA_EAGER_COMMIT), 2);
        }
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(ffi::mimalloc_get(ffi::MI_PURGE_DELAY), 1000);
        }
        // The server's settings (before_anything_else's; no other test here uses mimalloc).
        ffi::mimalloc_set(ffi::MI_ARENA_EAGER_COMMIT, 0);
        ffi::mimalloc_set(ffi::MI_PURGE_DELAY, 0);

        let sizes = [4 << 10, 8 << 10, 16 << 10, 32 << 10, 48 << 10];
        let (blocks_made, blocks) = mpsc::channel::<Vec<(usize, usize)>>();
        let (collect, collect_now) = mpsc::channel::<()>();
        let (collected, collect_done) = mpsc::channel::<()>();
        let owner = std::thread::spawn(move || {
            let made =
                sizes.iter().flat_map(|&size| (0..3).map(move |n| (ffi::mimalloc_block(size, n as u8 + 1), size)));
            blocks_made.send(made.collect()).unwrap();
            collect_now.recv().unwrap();
            super::collect_idle_thread();
            collected.send(()).unwrap();
            // Alive until the end: a thread's exit would give its pages back too.
            let _ = collect_now.recv();
        });
        let blocks = blocks.recv().unwrap();
        let resident =
            |blocks: &[(usize, usize)]| blocks.iter().map(|&(at, size)| ffi::resident_bytes(at, size)).sum::<usize>();
        let total: usize = blocks.iter().map(|block| block.1).sum();
        assert_eq!(resident(&blocks), total, "written, every block is resident");
        for &(block, _) in &blocks {
            ffi::mimalloc_free(block);
        }
        let freed = resident(&blocks);
        assert!(
            freed >= total / 2,
            "freed by another thread, the blocks stay the owner's: {freed} of {total} bytes resident"
        );
        collect.send(()).unwrap();
        collect_done.recv().unwrap();
        let collected = resident(&blocks);
        assert!(
            collected <= total / 8,
            "the owner's collect gave them back: {collected} of {total} bytes still resident"
        );
        drop(collect);
        owner.join().unwrap();
    }
}
