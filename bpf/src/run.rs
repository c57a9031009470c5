//! `kawrap --bpf -- CMD`: run one command in a transient scope, pass on
//! the signals meant for it, clean up after it.
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

use kawrap_core::Config;

use crate::error::Error;
use crate::scope::{Cleanup, Scope};

/// Signals kawrap passes on to the command: those a service manager or a
/// person uses to stop or reload "the program", which is the command.
const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The child to forward to; 0 while none runs. A process runs one command
/// at a time through [`run`], so one slot is enough.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before the command was started, delivered to it
/// right after.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// How a [`run`] ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The command's exit status (code, or the signal that killed it).
    pub status: ExitStatus,
    /// What closing the scope found.
    pub cleanup: Cleanup,
    /// The transient cgroup the command ran in (removed by now).
    pub cgroup: std::path::PathBuf,
}

extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // A terminal's Ctrl-C or hang-up (si_code SI_KERNEL) already reaches
    // the whole foreground process group, command included: passing it on
    // would deliver it twice. Signals sent to kawrap itself (kill, a service
    // manager) are meant for the command.
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    let pid = CHILD.load(Ordering::SeqCst);
    if pid == 0 {
        PENDING.store(signal, Ordering::SeqCst);
    } else if pid > 0 && !from_kernel {
        // SAFETY: kill is async-signal-safe; errno is saved and restored
        // so the interrupted code sees its own.
        unsafe {
            let errno = *libc::__errno_location();
            libc::kill(pid, signal);
            *libc::__errno_location() = errno;
        }
    }
}

/// Installs the forwarding handlers; restores the previous ones on drop.
struct Forwarding {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Forwarding {
    fn install() -> Forwarding {
        let mut previous = Vec::new();
        for signal in FORWARDED {
            // SAFETY: a zeroed sigaction is a valid starting point; the
            // handler has the SA_SIGINFO signature; sigaction only reads
            // `action` and writes `old`, both owned here.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = forward as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        Forwarding { previous }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores the action saved by `install`.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
    }
}

/// Runs `command` in a new transient scope with `config`, waits for it,
/// then detaches and removes the scope. SIGINT, SIGTERM and SIGHUP sent to
/// this process are passed on to the command.
///
/// The caller maps the status to its own exit code (128 + signal when the
/// command was killed) and may warn about [`Cleanup::moved_out`].
pub fn run(config: &Config, command: &mut Command) -> Result<RunOutcome, Error> {
    let scope = Scope::create(config)?;
    PENDING.store(0, Ordering::SeqCst);
    // Handlers first: a signal between spawn and install would be lost.
    let forwarding = Forwarding::install();
    let mut child = scope.spawn(command)?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending != 0 {
        // SAFETY: kill has no memory preconditions; the child is ours and
        // not yet reaped, so the pid is still its own.
        unsafe { libc::kill(child.id() as i32, pending) };
    }
    let waited = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    drop(forwarding);
    let status = waited.map_err(|e| Error::io("wait for the command", e))?;
    let cgroup = scope.path().to_path_buf();
    let cleanup = scope.close()?;
    Ok(RunOutcome { status, cleanup, cgroup })
}
