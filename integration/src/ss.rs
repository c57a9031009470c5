//! `ss -tnoH`: the operator's own view of a socket's keepalive timer.
//!
//! `ss -o` prints `timer:(keepalive,4min59sec,0)` for a socket whose
//! keepalive timer is armed; that (not a literal "ka") is what tests assert.
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// One line of `ss -tnoH` output.
#[derive(Clone, Debug, PartialEq)]
pub struct SsLine {
    /// TCP state, e.g. `ESTAB`.
    pub state: String,
    /// Local `addr:port`.
    pub local: String,
    /// Peer `addr:port`.
    pub peer: String,
    /// The timer kind and remaining time, if any: (`keepalive`, 299 s).
    pub timer: Option<(String, Duration)>,
    /// The whole line, for messages.
    pub raw: String,
}

impl SsLine {
    /// The keepalive timer's remaining time, if that is the armed timer.
    pub fn keepalive(&self) -> Option<Duration> {
        match &self.timer {
            Some((kind, remaining)) if kind == "keepalive" => Some(*remaining),
            _ => None,
        }
    }

    /// The local port.
    pub fn local_port(&self) -> Option<u16> {
        self.local.rsplit(':').next()?.parse().ok()
    }

    /// The peer port.
    pub fn peer_port(&self) -> Option<u16> {
        self.peer.rsplit(':').next()?.parse().ok()
    }
}

/// Runs `ss -tnoH` with extra filter arguments (e.g. `["dport", "=", ":5432"]`).
pub fn ss(filter: &[&str]) -> Vec<SsLine> {
    let output = Command::new("ss").args(["-tnoH"]).args(filter).output().expect("run ss (iproute2)");
    String::from_utf8_lossy(&output.stdout).lines().filter_map(parse_line).collect()
}

/// Established loopback connections to `127.0.0.1:port` (a test's own
/// server): the clients' ends. Both ends are matched as far as they are
/// known (the clients' ports are theirs to choose), so another program's
/// connection that happens to share a port number is never picked.
pub fn established_to_port(port: u16) -> Vec<SsLine> {
    let filter = format!("( src 127.0.0.1 and dst 127.0.0.1:{port} )");
    ss(&["state", "established", &filter])
}

/// The server's ends of the loopback connections to `127.0.0.1:port`.
pub fn established_from_port(port: u16) -> Vec<SsLine> {
    let filter = format!("( src 127.0.0.1:{port} and dst 127.0.0.1 )");
    ss(&["state", "established", &filter])
}

/// The one established connection from `local` to `peer`, both ends matched.
pub fn connection(local: SocketAddr, peer: SocketAddr) -> Option<SsLine> {
    let filter = format!("( src {local} and dst {peer} )");
    ss(&["state", "established", &filter]).into_iter().next()
}

/// Parses `ESTAB 0 0 127.0.0.1:40000 127.0.0.1:5432 timer:(keepalive,4min59sec,0)`.
/// With a `state` filter ss omits the state column; both forms are read.
pub fn parse_line(line: &str) -> Option<SsLine> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (state, rest) = match fields.first()?.parse::<u64>() {
        Ok(_) => ("ESTAB".to_string(), &fields[..]),
        Err(_) => (fields[0].to_string(), &fields[1..]),
    };
    if rest.len() < 4 {
        return None;
    }
    let timer = rest[4..].iter().find_map(|f| f.strip_prefix("timer:(")).and_then(parse_timer);
    Some(SsLine {
        state,
        local: rest[2].to_string(),
        peer: rest[3].to_string(),
        timer,
        raw: line.to_string(),
    })
}

/// `keepalive,4min59sec,0)` → (`keepalive`, 299 s).
fn parse_timer(text: &str) -> Option<(String, Duration)> {
    let mut parts = text.trim_end_matches(')').split(',');
    let kind = parts.next()?.to_string();
    Some((kind, parse_ss_duration(parts.next()?)?))
}

/// ss's timer format (iproute2's `print_ms_timer`): `119min`, `4min59sec`,
/// `59sec`, `1.696ms` (1.696 s), `696ms`.
pub fn parse_ss_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..end];
        let value: f64 = number.parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "d" => 86400.0,
            "h" => 3600.0,
            "min" => 60.0,
            "sec" => 1.0,
            // iproute2 prints seconds with milliseconds as `1.696ms`
            // (1 s 696 ms), and milliseconds alone as `696ms`.
            "ms" if number.contains('.') => 1.0,
            "ms" => 0.001,
            "" => 1.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

    use super::*;

    /// Another connection from the same port number (here from another
    /// loopback address) is what made a test that filtered on `sport`
    /// alone pick the wrong socket: [`connection`] matches both ends.
    #[test]
    fn a_connection_is_told_apart_from_another_on_the_same_port() {
        let (first, second) =
            (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
        let ours = std::net::TcpStream::connect(first.local_addr().unwrap()).unwrap();
        SockRef::from(&ours)
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(300)))
            .unwrap();
        let local = ours.local_addr().unwrap();
        let decoy = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        decoy.bind(&SocketAddr::from(([127, 0, 0, 2], local.port())).into()).unwrap();
        decoy.connect(&second.local_addr().unwrap().into()).unwrap();

        let by_port = ss(&["state", "established", &format!("( sport = :{} )", local.port())]);
        assert_eq!(by_port.len(), 2, "both share the port: {by_port:?}");
        let line = connection(local, first.local_addr().unwrap()).expect("our connection");
        assert_eq!(line.local, local.to_string());
        assert!(line.keepalive().is_some_and(|t| t <= Duration::from_secs(300)), "{}", line.raw);
    }

    #[test]
    fn reads_keepalive_timer() {
        let line =
            parse_line("ESTAB 0 0 127.0.0.1:40000 127.0.0.1:5432 timer:(keepalive,4min59sec,0)").unwrap();
        assert_eq!(line.keepalive(), Some(Duration::from_secs(299)));
        assert_eq!(line.peer_port(), Some(5432));
        let line = parse_line("0 0 127.0.0.1:40000 127.0.0.1:3306 timer:(keepalive,119min,0)").unwrap();
        assert_eq!(line.keepalive(), Some(Duration::from_secs(119 * 60)));
        assert_eq!(parse_ss_duration("1.696ms"), Some(Duration::from_millis(1696)));
        assert_eq!(parse_ss_duration("696ms"), Some(Duration::from_millis(696)));
        let line = parse_line("0 0 [::1]:40000 [::1]:22").unwrap();
        assert_eq!(line.keepalive(), None);
    }
}
