//! [`SlowHttp`]: an HTTP server that takes its time to answer, for `curl`.
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::Client;

/// A tiny HTTP/1.1 server in a thread: reads a request's headers, waits
/// `delay`, answers 200 with a fixed body, closes. A connection that sends
/// no request is held open until the client closes it.
pub struct SlowHttp {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowHttp {
    /// The body every response carries.
    pub const BODY: &'static str = "kawrap slow response\n";

    /// Listens on a free port of 127.0.0.1.
    pub fn start(delay: Duration) -> SlowHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    std::thread::spawn(move || serve_slowly(conn, delay));
                }
            }
        });
        SlowHttp { port, stop, thread: Some(thread) }
    }

    /// `curl` fetching `/` (fails on HTTP errors, gives up after 30 s).
    pub fn curl(&self) -> Client {
        Client::new("curl")
            .args(["-sS", "--fail", "--max-time", "30"])
            .arg(format!("http://127.0.0.1:{}/", self.port))
    }
}

fn serve_slowly(conn: TcpStream, delay: Duration) {
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    let complete = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break false,
            Ok(_) if line == "\r\n" || line == "\n" => break true,
            Ok(_) => {}
        }
    };
    if !complete {
        return;
    }
    std::thread::sleep(delay);
    let body = SlowHttp::BODY;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut conn = &conn;
    let _ = conn.write_all(response.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
}

impl Drop for SlowHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
