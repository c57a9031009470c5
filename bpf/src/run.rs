//! `kawrap --bpf -- CMD`: run one command in a transient scope, as if
//! kawrap had become it (which the LD_PRELOAD mode does, with exec):
//!
//! - signals sent to kawrap reach the command, whose dispositions are the
//!   ones kawrap was started with: what was ignored (`nohup`, a shell's
//!   background job) is still ignored by the command, and what it then
//!   receives is up to it, exactly as if it had been sent to the command;
//! - a signal that arrives while the scope is being set up waits (blocked);
//!   then, instead of starting the command, kawrap removes the scope and
//!   dies by it, as the LD_PRELOAD mode's kawrap would have died before its
//!   exec (unless it was ignored, or is SIGWINCH, which ends nothing). Only
//!   processes that exist when a terminal's Ctrl-C is typed receive it, so
//!   passing it on to a command started later is not the same;
//! - the command's child process takes the default dispositions back
//!   before it joins the scope, not only at its exec: a Ctrl-C typed
//!   meanwhile ends it, where kawrap's handler would have swallowed it;
//! - when the command is killed by a signal, kawrap cleans up and then dies
//!   by the same signal ([`die_by_signal`]), so that a calling shell sees
//!   what it would have seen without kawrap (a Ctrl-C stops its loop).
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

use kawrap_core::Config;

use crate::error::Error;
use crate::host::Host;
use crate::scope::{Cleanup, Scope};

/// The child to forward to; 0 while none runs. A process runs one command
/// at a time through [`Host::run`], so one slot is enough.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// How a [`Host::run`] ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The command's exit status (code, or the signal that killed it); or
    /// the signal that ended kawrap's start before the command ran.
    pub status: ExitStatus,
    /// What closing the scope found.
    pub cleanup: Cleanup,
    /// The transient cgroup the command ran in (removed by now, unless
    /// [`Cleanup::still_running`]).
    pub cgroup: String,
}

/// The signals passed on to the command: every asynchronous one a person
/// or a service manager may send "the program" — those that terminate by
/// default, the window-size change, and the real-time signals. Not the
/// faults (kawrap's own), SIGCHLD, SIGPIPE (Rust ignores it before main, so
/// the shell's disposition is unknown), nor the job-control signals, which
/// would stop or continue the command behind the back of the shell that
/// controls kawrap.
fn forwarded() -> Vec<libc::c_int> {
    let mut signals = vec![
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGTERM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGWINCH,
        libc::SIGIO,
        libc::SIGPWR,
    ];
    signals.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    signals
}

extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // A terminal's Ctrl-C, hang-up or resize (si_code SI_KERNEL) already
    // reaches the whole foreground process group, command included:
    // passing it on would deliver it twice. Signals sent to kawrap itself
    // (kill, a service manager) are meant for the command.
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && !from_kernel {
        // SAFETY: kill is async-signal-safe; errno is saved and restored
        // so the interrupted code sees its own.
        unsafe {
            let errno = *libc::__errno_location();
            libc::kill(pid, signal);
            *libc::__errno_location() = errno;
        }
    }
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// The forwarded signals: blocked while the scope is set up, then handled
/// by [`forward`] while the command runs; everything as it was on drop.
struct Forwarding {
    signals: Vec<libc::c_int>,
    old_mask: libc::sigset_t,
    previous: Vec<(libc::c_int, libc::sigaction)>,
    /// Those kawrap was started with ignored.
    ignored: Vec<libc::c_int>,
}

impl Forwarding {
    /// Blocks the forwarded signals: one that arrives from now on waits.
    fn block() -> Forwarding {
        let signals = forwarded();
        let set = signal_set(&signals);
        // SAFETY: a zeroed sigset_t is a valid out value; sigprocmask only
        // reads `set` and writes `old_mask`.
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old_mask) };
        Forwarding { signals, old_mask, previous: Vec::new(), ignored: Vec::new() }
    }

    /// Installs [`forward`] for every forwarded signal, remembering which
    /// were ignored.
    fn install(&mut self) {
        for &signal in &self.signals {
            // SAFETY: a zeroed sigaction is a valid starting point; the
            // handler has the SA_SIGINFO signature; sigaction only reads
            // `action` and writes `old`, both owned here.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                    continue;
                }
                if old.sa_sigaction == libc::SIG_IGN {
                    self.ignored.push(signal);
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = forward as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) == 0 {
                    self.previous.push((signal, old));
                }
            }
        }
    }

    /// Makes `command` start with the signal mask and dispositions kawrap
    /// started with: kawrap's handlers replaced by the default (exec would
    /// reset them, but a signal that arrived before it would meet
    /// [`forward`], which has no child to pass it to in the child), the
    /// signals kawrap was started with ignored ignored again, and then the
    /// forwarded signals unblocked again (a fork inherits the mask, and so
    /// does exec).
    fn restore_in_child(&self, command: &mut Command) {
        let dispositions: Vec<(libc::c_int, libc::sighandler_t)> = self
            .signals
            .iter()
            .map(|&signal| {
                let ignored = self.ignored.contains(&signal);
                (signal, if ignored { libc::SIG_IGN } else { libc::SIG_DFL })
            })
            .collect();
        let mask = self.old_mask;
        // SAFETY: runs in the forked child before exec and only calls
        // signal(2) and sigprocmask(2), which are async-signal-safe, on
        // memory allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                for &(signal, disposition) in &dispositions {
                    libc::signal(signal, disposition);
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
                Ok(())
            });
        }
    }

    /// A forwarded signal that arrived while the scope was set up and that
    /// would have ended kawrap then, taken off the pending ones: not one
    /// kawrap was started with ignored, nor SIGWINCH, whose default is to
    /// do nothing.
    fn take_pending_fatal(&self) -> Option<libc::c_int> {
        // SAFETY: sigpending and sigismember fill and read a set we own;
        // sigtimedwait with a zero timeout only takes the signal off the
        // pending ones.
        unsafe {
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let signal = self.signals.iter().copied().find(|&signal| {
                libc::sigismember(&pending, signal) == 1
                    && signal != libc::SIGWINCH
                    && !self.ignored.contains(&signal)
            })?;
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            libc::sigtimedwait(&signal_set(&[signal]), std::ptr::null_mut(), &zero);
            Some(signal)
        }
    }

    /// Lets the signals in: those that waited are passed on now.
    fn unblock(&self) {
        // SAFETY: restores the mask saved by `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut()) };
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores an action saved by `install`.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
        self.unblock();
    }
}

impl Host {
    /// Runs `command` in a new transient scope with `config`, waits for it,
    /// then removes the scope (see [`Scope::close`]). `ready` is called
    /// once the scope exists, before the command starts.
    ///
    /// The caller maps the status to its own exit code, or calls
    /// [`die_by_signal`] when the command was killed by one.
    pub fn run(
        &self,
        config: &Config,
        command: &mut Command,
        ready: impl FnOnce(&Scope<'_>),
    ) -> Result<RunOutcome, Error> {
        let mut forwarding = Forwarding::block();
        let scope = self.scope(config)?;
        ready(&scope);
        forwarding.install();
        if let Some(signal) = forwarding.take_pending_fatal() {
            let cgroup = scope.display();
            let cleanup = scope.close();
            // The wait status of a process killed by `signal`.
            return Ok(RunOutcome { status: ExitStatus::from_raw(signal), cleanup, cgroup });
        }
        forwarding.restore_in_child(command);
        let mut child = scope.spawn(command)?;
        CHILD.store(child.id() as i32, Ordering::SeqCst);
        forwarding.unblock();
        let waited = child.wait();
        CHILD.store(0, Ordering::SeqCst);
        drop(forwarding);
        let status = waited.map_err(|e| Error::io("wait for the command", e))?;
        let cgroup = scope.display();
        let cleanup = scope.close();
        Ok(RunOutcome { status, cleanup, cgroup })
    }
}

/// Ends this process by `signal`, as the command it ran ended: with its
/// default action, whatever kawrap's disposition was, and without a core
/// dump of kawrap itself. Returns only if the signal does not terminate
/// (the caller then exits with 128 + signal).
pub fn die_by_signal(signal: libc::c_int) {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let set = signal_set(&[signal]);
    // SAFETY: plain system calls on values we own; after raise the process
    // is normally gone.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}
