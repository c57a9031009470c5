//! `kawrap check`: the live TCP sockets, and whether each one will notice a
//! dead peer: keepalive on, the timer the kernel has armed, and (where we
//! may take a copy of the socket) its exact keepalive options.
//!
//! Three steps, one module each: [`gather`] finds the sockets (of the
//! selected processes, in whatever network namespace each lives) and reads
//! them; [`judge`] compares them with `--expect`, [`keep_under`] with a
//! middlebox's idle timeout; [`render`] prints them for people or as JSON,
//! [`metrics`] for Prometheus.
mod gather;
mod judge;
mod keep_under;
mod metrics;
mod render;

use crate::args::check::{CheckArgs, Format};
use crate::atomic_file::write_atomically;
use crate::bpf_mode::Attachments;
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::middlebox;
use crate::output::{printable, write_stdout};
use crate::selection::{self, Selected};
use gather::{Filter, Network};
use render::Expectation;

/// Runs `kawrap check`.
pub fn run(args: &CheckArgs) -> Result<ExitCode, Error> {
    let expect = args.expect.as_deref().map(crate::user_profiles::resolve_profile).transpose()?;
    let keep_under = args.keep_under.as_deref().map(middlebox::resolve).transpose()?;
    let filter = Filter { port: args.port, dst: args.dst.as_deref().map(Network::parse).transpose()? };
    let selected = select(args)?;
    // Read once, for the KAWRAP column and the metrics alike.
    let attachments = Attachments::default();
    let gathered = gather::gather(selected.as_ref().map(|s| s.pids.as_slice()), &filter, &attachments)?;

    let mut notes = selected.as_ref().map(|s| s.notes.clone()).unwrap_or_default();
    notes.extend(gathered.notes.iter().cloned());
    if !args.children {
        notes.extend(args.pid.iter().filter_map(|&pid| sockets_below(pid, &gathered)));
    }
    let judged = expect.as_ref().map(|profile| judge::judge(&gathered.rows, profile));
    let expectation = expect
        .as_ref()
        .zip(judged.as_ref())
        .map(|(profile, (verdict, judgements))| Expectation { profile, verdict, judgements });
    let under = keep_under.map(|timeout| keep_under::judge(&gathered.rows, timeout));
    let text = match args.format() {
        Format::Table => render::table(&gathered, &notes, expectation.as_ref(), under.as_ref()),
        Format::Json => render::json(&gathered, &notes, expectation.as_ref(), under.as_ref()),
        Format::Prometheus => metrics::render(&gathered, &notes, under.as_ref(), &attachments),
    };
    match &args.output {
        Some(path) => write_atomically(path, text.as_bytes(), 0o644)
            .map_err(|error| Error::io(format!("cannot write {}", path.display()), error))?,
        None => write_stdout(text.as_bytes())?,
    }
    let failed = judged.is_some_and(|(verdict, _)| !verdict.passed())
        || under.is_some_and(|under| !under.summary.passed());
    Ok(if failed { ExitCode::CheckFailed } else { ExitCode::Success })
}

/// The processes `--pid`, `--children`, `--unit` and `--cgroup` select;
/// `None` when none of them is given (every socket of our namespace).
fn select(args: &CheckArgs) -> Result<Option<Selected>, Error> {
    if args.pid.is_empty() && args.unit.is_none() && args.cgroup.is_none() {
        if args.children {
            return Err(Error::Invalid {
                message: "--children: of which processes?".to_owned(),
                hint: "give --pid PID, --unit UNIT or --cgroup DIR with it, e.g. --pid 1234 --children"
                    .to_owned(),
            });
        }
        return Ok(None);
    }
    let mut selected = Selected::from_pids(&args.pid, &|pid| format!("use --pid {pid}"))?;
    if let Some(unit) = &args.unit {
        selected.add_unit(unit)?;
    }
    if let Some(dir) = &args.cgroup {
        selected.add_cgroup(dir)?;
    }
    if args.children {
        selected.add_descendants();
    }
    Ok(Some(selected))
}

/// For a `--pid` that holds no TCP socket: the processes under it that do
/// (the shell of a pipeline, a service's `sh -c`).
fn sockets_below(pid: u32, gathered: &gather::Gathered) -> Option<String> {
    if gathered.rows.iter().any(|row| row.owners.iter().any(|o| o.pid == pid))
        || crate::sockets::owners::tcp_socket_count(pid) > 0
    {
        return None;
    }
    let holders = selection::tcp_holders_below(pid);
    (!holders.is_empty()).then(|| {
        format!(
            "process {pid} ({}) holds no TCP socket; processes under it do: {} — add --children to include them",
            printable(&crate::processes::comm(pid)),
            selection::describe_holders(&holders)
        )
    })
}
