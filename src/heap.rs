//! Gives the heap that closed connections freed back to the system.
//!
//! glibc's allocator keeps freed memory for reuse: after a burst of connections comes and goes,
//! the process stays at its high-water mark although most of it is free (10,000
//! connect/disconnect cycles left 66 MB resident where 27 MB were in use). Every
//! `HEAP_TRIM_INTERVAL_MS`, if a TCP connection closed (or a disconnected socket's recovery
//! session expired) since the last round, `malloc_trim` returns the free pages of every arena.
//! It runs on a blocking thread; it briefly holds each arena's lock, so it runs only after
//! closes and at most once per interval.
//!
//! `malloc_trim` cannot give back a page that holds a block still in use, and the blocks in
//! a thread's cache (glibc's tcache, up to 7 freed blocks per size up to 1 KiB) count as in
//! use. After a burst, the runtime workers' caches hold the last blocks they freed, scattered
//! one or two to a page over the arenas the burst grew: 10,000 connect/disconnect cycles left
//! ~400 such pages in each worker's arena with ~40 live allocations between them. So the
//! service starts with blocks above 256 bytes kept out of the thread caches
//! (`glibc.malloc.tcache_max=256`, set by `use_small_thread_caches`); smaller blocks, the most
//! frequent, keep the fast path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Connections closed and sessions dropped since the last trim.
static FREED_SINCE_TRIM: AtomicU64 = AtomicU64::new(0);

/// A connection closed or a session was dropped: its memory is free now.
pub fn note_freed() {
    FREED_SINCE_TRIM.fetch_add(1, Ordering::Relaxed);
}

/// Starts the rounds; `interval` zero: never.
pub fn spawn_trimmer(interval: Duration) {
    if interval.is_zero() || !supported() {
        return;
    }
    tokio::spawn(async move {
        let mut rounds = tokio::time::interval(interval);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rounds.tick().await;
        loop {
            rounds.tick().await;
            if FREED_SINCE_TRIM.swap(0, Ordering::Relaxed) > 0 {
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    });
}

/// The glibc tunable this module sets, unless the environment already sets `tcache_max`.
pub const THREAD_CACHE_TUNABLE: &str = "glibc.malloc.tcache_max=256";

/// Makes the process run with `THREAD_CACHE_TUNABLE`. glibc reads its tunables from the
/// environment once, as the process starts, so the process executes itself again (same pid,
/// arguments and descriptors) with the tunable added to `GLIBC_TUNABLES`. Call it first in
/// `main`, before any thread starts. An operator's own `glibc.malloc.tcache_max` is kept; if
/// the executable cannot be run again the process carries on as it is. Tools that preload a
/// library and do not follow an exec (heaptrack) need `GLIBC_TUNABLES` set beforehand.
pub fn use_small_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = match std::env::var("GLIBC_TUNABLES") {
            Ok(tunables) => tunables,
            Err(std::env::VarError::NotPresent) => String::new(),
            // Not text: the operator's value, left as it is.
            Err(std::env::VarError::NotUnicode(_)) => return,
        };
        if current.contains("glibc.malloc.tcache_max") {
            return;
        }
        let tunables = if current.is_empty() { THREAD_CACHE_TUNABLE.to_string() } else { format!("{current}:{THREAD_CACHE_TUNABLE}") };
        let Ok(exe) = std::env::current_exe() else { return };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        let error = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
        eprintln!("chat-service: running with glibc's default thread caches: cannot execute itself again: {error}");
    }
}

/// Whether this build can give memory back (glibc on Linux).
pub fn supported() -> bool {
    cfg!(all(target_os = "linux", target_env = "gnu"))
}

/// Returns the free pages of every arena to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("resident pages");
        pages * 4
    }

    #[test]
    fn freed_small_blocks_are_given_back() {
        if !supported() {
            return;
        }
        // Small blocks come from the heap, not from mmap; the last one, kept, pins the top of
        // the heap so that free() alone cannot shrink it.
        let mut blocks: Vec<Box<[u8; 1024]>> = (0..60_000).map(|i| Box::new([i as u8; 1024])).collect();
        let pin = blocks.pop();
        drop(blocks);
        let before = resident_kib();
        trim();
        let after = resident_kib();
        drop(pin);
        assert!(before > after + 30_000, "resident {before} KiB before the trim, {after} KiB after");
    }
}
