//! A TCP client that waits on a peer the way real programs do, for the
//! dead-peer tests: it connects with plain std/libc calls (so the shim's
//! hooks apply), prints `connected`, then blocks in read() — or, with
//! `--send`, keeps writing a little data so some is always unacknowledged —
//! until the kernel reports an error. Its last line says which:
//!
//! ```text
//! {"result":"error","errno":"ETIMEDOUT","code":110,"elapsed_s":5.071}
//! ```
//!
//! `elapsed_s` counts from `connected`; the tests keep their own clock from
//! the moment they cut the link.
//!
//! Usage:
//!   blocking_client ADDR:PORT [--send] [--keepalive I/V/C[/UT_MS]]
//!   blocking_client --listen ADDR:PORT
//!
//! `--keepalive` sets the options on the socket itself (no shim): the
//! control that proves the namespace and nftables mechanics.
//! `--listen` accepts connections and reads (discarding) until each closes,
//! so a `--send` client always has a window to write into.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("blocking_client: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let usage = "usage: blocking_client ADDR:PORT [--send] [--keepalive I/V/C[/UT_MS]] | --listen ADDR:PORT";
    let mut addr = None;
    let mut listen = None;
    let mut send = false;
    let mut keepalive = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--send" => send = true,
            "--listen" => listen = Some(iter.next().ok_or(usage)?.clone()),
            "--keepalive" => keepalive = Some(parse_keepalive(iter.next().ok_or(usage)?)?),
            other if addr.is_none() && !other.starts_with("--") => addr = Some(other.to_string()),
            other => return Err(format!("unexpected argument {other:?}; {usage}")),
        }
    }
    if let Some(listen) = listen {
        return serve(&listen);
    }
    let addr = addr.ok_or(usage)?;
    let mut stream = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    if let Some(values) = keepalive {
        set_keepalive(&stream, values)?;
    }
    let start = Instant::now();
    say("connected");
    let failure = if send { write_forever(&mut stream) } else { read_forever(&mut stream) };
    let elapsed = start.elapsed().as_secs_f64();
    match failure {
        Some(err) => {
            let code = err.raw_os_error().unwrap_or(0);
            say(&format!(
                r#"{{"result":"error","errno":"{}","code":{code},"elapsed_s":{elapsed:.3}}}"#,
                errno_name(code)
            ));
            Ok(ExitCode::from(1))
        }
        None => {
            say(&format!(r#"{{"result":"eof","elapsed_s":{elapsed:.3}}}"#));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints one line and flushes it at once: the test reads it through a pipe.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Blocks in read() until EOF (`None`) or an error.
fn read_forever(stream: &mut TcpStream) -> Option<std::io::Error> {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(e),
        }
    }
}

/// Writes 1 KiB every 10 ms: enough that data is always in flight when the
/// link dies, little enough not to take a core from the other tests.
fn write_forever(stream: &mut TcpStream) -> Option<std::io::Error> {
    let chunk = [b'k'; 1024];
    loop {
        if let Err(e) = stream.write_all(&chunk) {
            return Some(e);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn serve(addr: &str) -> Result<ExitCode, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    say("listening");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
    Ok(ExitCode::SUCCESS)
}

type Keepalive = (i32, i32, i32, Option<i32>);

fn parse_keepalive(text: &str) -> Result<Keepalive, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let num = |s: &str| s.parse::<i32>().map_err(|_| format!("--keepalive {text:?}: {s:?} is not a number"));
    match parts.as_slice() {
        [i, v, c] => Ok((num(i)?, num(v)?, num(c)?, None)),
        [i, v, c, ut] => Ok((num(i)?, num(v)?, num(c)?, Some(num(ut)?))),
        _ => Err(format!("--keepalive {text:?}: expected IDLE/INTVL/CNT[/USER_TIMEOUT_MS]")),
    }
}

fn set_keepalive(stream: &TcpStream, (idle, intvl, cnt, ut): Keepalive) -> Result<(), String> {
    let fd = stream.as_raw_fd();
    let mut options = vec![
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1, "SO_KEEPALIVE"),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle, "TCP_KEEPIDLE"),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, intvl, "TCP_KEEPINTVL"),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, cnt, "TCP_KEEPCNT"),
    ];
    if let Some(ut) = ut {
        options.push((libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ut, "TCP_USER_TIMEOUT"));
    }
    for (level, name, value, label) in options {
        // SAFETY: fd is this stream's open socket; value is a live c_int and
        // the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!("setsockopt {label}={value}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn errno_name(code: i32) -> &'static str {
    match code {
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EPIPE => "EPIPE",
        libc::EPERM => "EPERM",
        _ => "OTHER",
    }
}
