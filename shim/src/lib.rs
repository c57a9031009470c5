//! libkawrap.so — gives the TCP sockets of an unmodified program the
//! keepalive settings of a kawrap profile, from outside, via `LD_PRELOAD`.
//!
//! It interposes `socket`, `connect`, `listen`, `accept`, `accept4`,
//! `setsockopt`, and `sendto`/`sendmsg` (TCP Fast Open connects through
//! them). Every hook calls the real function (resolved with
//! `dlsym(RTLD_NEXT)`, see `real`) and returns exactly its result and
//! `errno`; what the shim adds can fail without the program ever noticing.
//!
//! Decisions follow the *socket*, never the descriptor number: a number
//! can be closed behind libc's back and refilled, and one socket can have
//! several numbers. What the shim remembers per socket (`records`) is keyed
//! by the kernel's identity of the socket and trusted only when the kernel
//! confirms it; `events` says what is decided when, and at which cost in
//! system calls.
//!
//! Layers, each using only those below it:
//! `hooks` → `events` → `config`, `records`, `log`, `address`, `socket`
//! → `options` → `real`, `sys` (the only places that call libc or the kernel).
//!
//! Rules this code keeps, because it runs inside other people's programs
//! (see DESIGN.md, "Shim hazards"):
//! - no allocation, no locks, no thread-locals: only atomics, so it works
//!   before `main`, in signal-heavy code, in threads and after `fork`;
//!   nothing registered with libc (no atfork or atexit handler), so nothing
//!   of it is reachable after `dlclose`;
//! - only the system calls every networking program makes (socket option
//!   calls, fstat, and for the log file open/write/close) — nothing that
//!   reads another process's memory, so seccomp allow-lists let it be;
//! - never reads memory the kernel has not just accepted from the program;
//! - no panics (`panic = "abort"` is only the last line of defence);
//! - never writes to fd 0/1/2; logging goes to `KAWRAP_LOG` only;
//! - reads its environment once (daemons clear theirs after start), with
//!   `secure_getenv`, so a setuid program ignores it entirely;
//! - touches only AF_INET/AF_INET6 `SOCK_STREAM` TCP sockets;
//! - imports only functions glibc ≥ 2.17 and musl ≥ 1.2 both have.
#![no_std]

mod address;
mod config;
mod events;
mod hooks;
mod log;
mod options;
mod real;
mod records;
mod socket;
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
    config::get();
    real::resolve_all();
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;
