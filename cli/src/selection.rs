//! Which processes a person means, for `kawrap check` and `kawrap attach`:
//! process ids (a thread id is not one), their descendants, the processes
//! of a systemd unit or of a cgroup; and, for a process that holds no TCP
//! socket, the processes below it that do (the shell of a pipeline, a
//! service's `sh -c` main process).
use std::path::Path;

use crate::error::Error;
use crate::output::printable;
use crate::processes::{self, Identity};
use crate::sockets::owners;
use crate::sockets::remote::AccessError;
use crate::systemd::full_unit_name;

/// The processes selected, in the order they were named, each once.
#[derive(Debug, Default)]
pub struct Selected {
    /// The process ids.
    pub pids: Vec<u32>,
    /// What a person should know about the selection (a unit without
    /// processes…).
    pub notes: Vec<String>,
}

impl Selected {
    /// The processes `pids`, each checked to be one (see [`require_process`]).
    pub fn from_pids(pids: &[u32], suggest: &dyn Fn(u32) -> String) -> Result<Selected, Error> {
        let mut selected = Selected::default();
        for &pid in pids {
            require_process(pid, suggest)?;
            selected.add(pid);
        }
        Ok(selected)
    }

    /// Adds every descendant of the processes selected so far.
    pub fn add_descendants(&mut self) {
        for pid in processes::descendants(&self.pids) {
            self.add(pid);
        }
    }

    /// Adds the processes of the systemd unit `unit` (`backup` means
    /// `backup.service`): those in a cgroup of that name, or below one.
    pub fn add_unit(&mut self, unit: &str) -> Result<(), Error> {
        let name = full_unit_name(unit);
        let before = self.pids.len();
        let all = processes::all().map_err(|error| Error::io("cannot read /proc", error))?;
        for pid in all.into_iter().filter(|&pid| processes::in_cgroup_named(pid, &name)) {
            self.add(pid);
        }
        if self.pids.len() == before {
            self.notes.push(format!(
                "no process is in a cgroup named {} (is the unit running? `systemctl status {}`)",
                printable(&name),
                printable(&name)
            ));
        }
        Ok(())
    }

    /// Adds the processes of the cgroup directory `dir` and of the cgroups below it.
    pub fn add_cgroup(&mut self, dir: &Path) -> Result<(), Error> {
        if !dir.join("cgroup.procs").is_file() {
            return Err(Error::Invalid {
                message: format!("--cgroup {dir:?}: not a cgroup directory (it has no cgroup.procs)"),
                hint: "give a directory of a cgroup file system, e.g. /sys/fs/cgroup/system.slice/backup.service \
                       (cgroup v2), or /sys/fs/cgroup/systemd/system.slice/backup.service (systemd's v1 \
                       hierarchy)"
                    .to_owned(),
            });
        }
        let pids = processes::in_cgroup_dir(dir).map_err(|error| {
            Error::io(format!("--cgroup {}: cannot read its processes", dir.display()), error)
        })?;
        if pids.is_empty() {
            self.notes.push(format!("no process is in the cgroup {}", printable(&dir.to_string_lossy())));
        }
        for pid in pids {
            self.add(pid);
        }
        Ok(())
    }

    fn add(&mut self, pid: u32) {
        if !self.pids.contains(&pid) {
            self.pids.push(pid);
        }
    }
}

/// Checks that `pid` names a running process. A thread id is refused with
/// its process named; `suggest` says how to name the process instead (for
/// `check`, `--pid P`; for `attach`, `kawrap attach P`).
fn require_process(pid: u32, suggest: &dyn Fn(u32) -> String) -> Result<(), Error> {
    match processes::identify(pid) {
        Ok(Identity::Process) => Ok(()),
        Ok(Identity::Thread { tgid }) => Err(Error::Invalid {
            message: format!(
                "{pid} is a thread of process {tgid} ({}), not a process",
                printable(&processes::comm(tgid))
            ),
            hint: format!(
                "sockets belong to the whole process, not to one of its threads: {}",
                suggest(tgid)
            ),
        }),
        Err(error) => Err(AccessError::from_proc(pid, error).into()),
    }
}

/// A process below another one that holds TCP sockets.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its name, printable.
    pub comm: String,
    /// How many TCP sockets it holds.
    pub sockets: usize,
}

/// The descendants of `pid` that hold TCP sockets: where the sockets are
/// when `pid` is a shell running a pipeline or a service's `sh -c`.
pub fn tcp_holders_below(pid: u32) -> Vec<Holder> {
    processes::descendants(&[pid])
        .into_iter()
        .filter_map(|below| {
            let sockets = owners::tcp_socket_count(below);
            (sockets > 0).then(|| Holder {
                pid: below,
                comm: printable(&processes::comm(below)).into_owned(),
                sockets,
            })
        })
        .collect()
}

/// `124 (pg_dump): 1, 130 (psql): 2`.
pub fn describe_holders(holders: &[Holder]) -> String {
    holders.iter().map(|h| format!("{} ({}): {}", h.pid, h.comm, h.sockets)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_refused_with_its_process() {
        let us = std::process::id();
        assert!(require_process(us, &|p| format!("--pid {p}")).is_ok());
        processes::with_a_thread(|tid| {
            let error = require_process(tid, &|p| format!("--pid {p}")).unwrap_err();
            assert!(
                error.to_string().starts_with(&format!("{tid} is a thread of process {us} (")),
                "{error}"
            );
            assert!(error.hint_lines()[0].ends_with(&format!("--pid {us}")), "{:?}", error.hint_lines());
        });
        let error = require_process(1 << 23, &|p| format!("--pid {p}")).unwrap_err();
        assert_eq!(error.to_string(), format!("no such process: {}", 1 << 23));
    }
}
