//! Processes a test starts: killed, with whatever they forked, when the
//! test ends or fails, and read line by line as they print.
use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A child process that is killed (with its process group, when it leads
/// one) and reaped when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> io::Result<KillOnDrop> {
        Ok(KillOnDrop::new(cmd.spawn()?))
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child: &mut Child = self;
        child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        crate::poll(timeout, || self.try_wait())
    }

    /// Waits for the child and collects its output (as `Child::wait_with_output`).
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        self.0.take().expect("child present until consumed").wait_with_output()
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("child present until consumed")
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("child present until consumed")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(child) = self.0.as_mut() else { return };
        if child.try_wait().ok().flatten().is_none() {
            if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill has no memory-safety preconditions; a negative
                // pid names the process group the child leads if it was
                // spawned with `process_group(0)` (as `Namespace::command`
                // does), and no group otherwise (the child is not reaped yet,
                // so its pid is not reused).
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `cmd` with stdout piped; its lines arrive on the receiver.
pub fn spawn_with_lines(mut cmd: Command) -> (KillOnDrop, Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop::new(child), rx)
}

/// Waits for the line `want`; panics with everything seen if it does not come.
pub fn expect_line(lines: &Receiver<String>, want: &str, what: &str) {
    expect_line_starting(lines, want, what, |line| line == want);
}

/// Waits for a line that starts with `prefix` and returns it; panics with
/// everything seen if none comes within 10 s.
pub fn expect_line_starting_with(lines: &Receiver<String>, prefix: &str, what: &str) -> String {
    expect_line_starting(lines, prefix, what, |line| line.starts_with(prefix))
}

fn expect_line_starting(
    lines: &Receiver<String>,
    want: &str,
    what: &str,
    matches: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if matches(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("{what} never printed {want:?}; output: {seen:?}");
}
