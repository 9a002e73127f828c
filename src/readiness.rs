//! The network readiness checks (`ready = { tcp }` and `{ http }`): one try,
//! in a short-lived thread of its own, so that the supervisor's loop never
//! waits on a connection. The loop decides when to try (a deadline of its
//! own); the thread reports once and ends. (`exec` checks are processes
//! that the loop reaps; `log` and `notify` checks need no try.)

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

/// One try of a network check; `report` gets `Ok` when it succeeded, else
/// what it saw ("connection refused", "HTTP 503").
pub enum Net<'a> {
    Tcp(&'a str),
    Http {
        address: &'a str,
        host: &'a str,
        path: &'a str,
    },
}

/// Starts one try, which gives up after `limit`.
pub fn try_once(
    check: Net<'_>,
    limit: Duration,
    report: impl FnOnce(Result<(), String>) + Send + 'static,
) -> io::Result<()> {
    let (address, request) = match check {
        Net::Tcp(a) => (a.to_owned(), None),
        Net::Http {
            address,
            host,
            path,
        } => (
            address.to_owned(),
            Some(format!(
                "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: dblaunch\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            )),
        ),
    };
    std::thread::Builder::new()
        .name("dblaunch-ready".to_owned())
        .spawn(move || {
            // Signals are the supervisor's: their handlers run on its thread.
            let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
            let until = Instant::now() + limit;
            report(try_address(&address, request.as_deref(), until));
        })?;
    Ok(())
}

fn try_address(address: &str, request: Option<&str>, until: Instant) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {}", said(&e)))?
        .collect();
    let mut last = format!("{address} has no address");
    for addr in addrs {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer in time".to_owned());
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                return match request {
                    None => Ok(()),
                    Some(r) => http(stream, r, until),
                };
            }
            Err(e) => last = said(&e),
        }
    }
    Err(last)
}

/// Sends `request` and reads the status line: any 2xx is ready.
fn http(mut stream: TcpStream, request: &str, until: Instant) -> Result<(), String> {
    let left = |until: Instant| {
        Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )
    };
    let _ = stream.set_write_timeout(left(until));
    stream.write_all(request.as_bytes()).map_err(|e| said(&e))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let _ = stream.set_read_timeout(left(until));
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("connected, but no HTTP answer in time".to_owned());
            }
            Err(e) => return Err(said(&e)),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("");
    let mut words = line.split_whitespace();
    match (
        words.next(),
        words.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => {
            if (200..300).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP {code}"))
            }
        }
        _ if line.is_empty() => {
            Err("connected, but the connection closed with no HTTP answer".to_owned())
        }
        _ => Err(format!(
            "not an HTTP answer: {:?}",
            line.chars().take(60).collect::<String>()
        )),
    }
}

/// An error as a person says it: "connection refused".
pub fn said(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut c = text.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => text.to_owned(),
    }
}
