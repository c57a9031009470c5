//! Everything that can go wrong, each with what to do instead.
use std::io;
use std::path::PathBuf;

/// The LD_PRELOAD mode needs no privileges and no kernel support; every
/// "cannot" message ends by pointing at it.
const FALLBACK: &str =
    "or use the LD_PRELOAD mode (`kawrap --profile P -- CMD`), which covers dynamically linked programs";

/// What a process that is not root needs, as measured with setpriv (see
/// the README): loading the programs needs CAP_BPF and CAP_NET_ADMIN
/// (sock_ops and cgroup sockopt programs are networking programs); the
/// cgroups, /run/kawrap and the pins belong to root: CAP_DAC_OVERRIDE;
/// naming programs by id (`status`, `detach`) needs CAP_SYS_ADMIN, which
/// also covers the first two.
pub const CAPABILITIES: &str = "CAP_BPF, CAP_NET_ADMIN and CAP_DAC_OVERRIDE (`kawrap bpf status` and \
                                `detach`: CAP_SYS_ADMIN and CAP_DAC_OVERRIDE)";

/// An eBPF-mode operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not root, or without the capabilities the operation needs.
    #[error(
        "{what}: permission denied. The eBPF mode needs root, or the capabilities {CAPABILITIES}: \
         run it with sudo, {FALLBACK}"
    )]
    Permission {
        /// What was refused.
        what: String,
    },
    /// The kernel has no cgroup v2 at all.
    #[error(
        "this kernel has no cgroup v2 (`cgroup2` is not in /proc/filesystems); the eBPF mode needs \
         Linux 5.10 or newer with cgroup v2 and CONFIG_CGROUP_BPF; {FALLBACK}"
    )]
    NoCgroup2,
    /// A path that is not a directory of a cgroup v2 hierarchy.
    #[error(
        "{path}: not a cgroup v2 directory (cgroup v1 hierarchies cannot run eBPF programs); \
         give a directory under the cgroup2 mount (see `grep cgroup2 /proc/self/mounts`)"
    )]
    NotCgroup2 {
        /// The path given.
        path: PathBuf,
    },
    /// A path inside a cgroup directory that is not a directory itself.
    #[error(
        "{path}: a file, not a cgroup directory; give the cgroup's directory \
         (…/NAME.service, not …/NAME.service/cgroup.procs)"
    )]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Another program on the same hook that kawrap would turn off, or that
    /// keeps the kernel from accepting kawrap's.
    #[error(
        "{cgroup} has a {hook} program that is not kawrap's ({program}), attached {}; kawrap does not \
         turn other programs off. Attach that program with BPF_F_ALLOW_MULTI to let both run \
         (`bpftool cgroup show {cgroup}` lists it), or {FALLBACK}",
        if *overridable {
            "with BPF_F_ALLOW_OVERRIDE: a kawrap program below it would replace it there, silently"
        } else {
            "exclusively (without BPF_F_ALLOW_MULTI): the kernel accepts no other program below it"
        }
    )]
    Occupied {
        /// Where it is attached.
        cgroup: String,
        /// `sock_ops` or `setsockopt`.
        hook: &'static str,
        /// Its id and name.
        program: String,
        /// Attached with BPF_F_ALLOW_OVERRIDE (else exclusively).
        overridable: bool,
    },
    /// A name `kawrap bpf pin` cannot use.
    #[error(
        "{name:?}: not a usable name for pinned programs; use letters, digits and _ @ - : \
         (the BPF filesystem refuses dots: backup_service for backup.service), not starting \
         with `new-`"
    )]
    BadName {
        /// The name given.
        name: String,
    },
    /// `kawrap bpf unpin` of a name nothing is pinned under.
    #[error("nothing is pinned under the name {name:?} (see `kawrap bpf status`)")]
    NotPinned {
        /// The name given.
        name: String,
    },
    /// A cgroup path that does not exist or cannot be read.
    #[error("cgroup {path}: {source}")]
    NoSuchCgroup {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        source: io::Error,
    },
    /// Mounting cgroup2 or the BPF filesystem failed.
    #[error("cannot mount {fstype} at {point}: {source}")]
    Mount {
        /// `cgroup2` or `bpf`.
        fstype: &'static str,
        /// Where.
        point: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The kernel refused the programs: too old, or built without sock_ops,
    /// cgroup sockopt hooks or `bpf_setsockopt`.
    #[error(
        "the kernel refused kawrap's eBPF program {program}: {detail}. The eBPF mode needs Linux \
         5.10 or newer with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF (sock_ops programs, \
         bpf_setsockopt, cgroup setsockopt hooks, socket storage); {FALLBACK}"
    )]
    KernelRefused {
        /// Which program or map.
        program: String,
        /// The kernel's answer (first lines of the verifier's log, if any).
        detail: String,
    },
    /// `detach` on a cgroup that kawrap has not pinned a program to.
    #[error("{path}: kawrap is not attached to this cgroup (see `kawrap bpf status`)")]
    NotAttached {
        /// The cgroup.
        path: PathBuf,
    },
    /// The command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program's name as given.
        program: String,
        /// The error from exec (NotFound → exit 127, PermissionDenied → 126).
        source: io::Error,
    },
    /// Any other system call that failed.
    #[error("{what}: {source}")]
    Io {
        /// What kawrap was doing.
        what: String,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Error {
        let what = what.into();
        if is_permission(&source) {
            return Error::Permission { what };
        }
        Error::Io { what, source }
    }

    /// A load the verifier abandoned because a signal arrived (EAGAIN):
    /// worth trying again.
    pub(crate) fn is_interrupted(&self) -> bool {
        matches!(self, Error::KernelRefused { detail, .. } if detail.contains("(os error 11)"))
    }

    /// Classifies an error from aya: permission problems, the kernel's
    /// refusal, or the rest.
    pub(crate) fn from_bpf(what: &str, error: &(dyn std::error::Error + 'static)) -> Error {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            // EPERM only: the verifier reports a rejected program as EACCES.
            if let Some(io_error) = e.downcast_ref::<io::Error>()
                && io_error.raw_os_error() == Some(libc::EPERM)
            {
                return Error::Permission { what: what.to_string() };
            }
            source = e.source();
        }
        Error::KernelRefused { program: what.to_string(), detail: first_lines(&error.to_string()) }
    }
}

fn is_permission(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// The verifier's log can be thousands of lines: keep the message readable.
fn first_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().take(6).collect();
    let mut out = lines.join(" | ");
    if text.lines().count() > lines.len() {
        out.push_str(" | …");
    }
    out
}
