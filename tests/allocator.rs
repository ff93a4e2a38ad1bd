//! The running service keeps blocks above 256 bytes out of glibc's thread caches (see
//! `chat_service::heap`), read from the process's own environment as glibc read it at start;
//! an operator's own `tcache_max` is left as it is.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use common::spawn_app;

/// The `GLIBC_TUNABLES` the process was started with (after it executed itself again). glibc
/// 2.36 cuts the variable at each `:` in place as it parses it, so the tunables after the first
/// show in `/proc/PID/environ` as entries of their own; they are joined back here.
fn tunables_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read the server's environment");
    let mut entries = environ.split(|b| *b == 0).map(|e| String::from_utf8_lossy(e).into_owned());
    let first = entries.find_map(|e| e.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))?;
    let rest = entries.take_while(|e| e.starts_with("glibc."));
    Some(std::iter::once(first).chain(rest).collect::<Vec<_>>().join(":"))
}

#[test]
fn the_service_runs_with_small_thread_caches() {
    let app = spawn_app(&[]);
    assert_eq!(tunables_of(app.pid()).as_deref(), Some(chat_service::heap::THREAD_CACHE_TUNABLE));
}

#[test]
fn other_tunables_are_kept_beside_it() {
    let app = spawn_app(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")]);
    let expected = format!("glibc.malloc.arena_max=4:{}", chat_service::heap::THREAD_CACHE_TUNABLE);
    assert_eq!(tunables_of(app.pid()), Some(expected));
}

#[test]
fn an_operators_own_thread_cache_setting_wins() {
    let app = spawn_app(&[("GLIBC_TUNABLES", "glibc.malloc.tcache_max=1032")]);
    assert_eq!(tunables_of(app.pid()).as_deref(), Some("glibc.malloc.tcache_max=1032"));
}
