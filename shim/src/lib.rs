//! libkawrap.so — gives the TCP sockets of an unmodified program the
//! keepalive settings of a kawrap profile, from outside, via `LD_PRELOAD`.
//!
//! It interposes `socket`, `connect`, `listen`, `setsockopt` and `close`.
//! Every hook calls the real function (resolved with `dlsym(RTLD_NEXT)`)
//! and returns exactly its result and `errno`; what the shim adds around it
//! can fail without the program ever noticing.
//!
//! Rules this code keeps, because it runs inside other people's programs
//! (see DESIGN.md, "Shim hazards"):
//! - no allocation, no locks, no thread-locals: only atomics, so it works
//!   before `main`, in signal-heavy code, in threads and after `fork`;
//! - no panics (`panic = "abort"` is only the last line of defence);
//! - never writes to fd 0/1/2; logging goes to `KAWRAP_LOG` only;
//! - reads its environment once (daemons clear theirs after start), with
//!   `secure_getenv`, so a setuid program ignores it entirely;
//! - touches only AF_INET/AF_INET6 `SOCK_STREAM` TCP sockets.
#![no_std]

mod config;
mod fds;
mod hooks;
mod log;
mod options;
mod sys;

/// The shim cannot unwind into C frames; a panic (which no code path here
/// should reach) stops the process rather than corrupting it.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Runs when the library is loaded, before the program's `main`: reads
/// the environment while it is still the one the launcher set, and resolves
/// the real functions. Hooks called even earlier (from another library's
/// constructor) do both lazily.
extern "C" fn on_load() {
    fds::claim();
    config::get();
    sys::resolve_all();
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;
