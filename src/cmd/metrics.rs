//! `dblaunch metrics [DB]... [--listen ADDR]`: the lock journals and the
//! queues as OpenMetrics text, printed once or served at `/metrics`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cli::MetricsArgs;
use crate::databases;
use crate::error::Error;
use crate::history::metrics::{self, Format, Live};
use crate::manifest::Manifest;
use dblaunch_lock::Database;
use dblaunch_lock::occupancy;

pub fn execute(file: Option<&Path>, args: MetricsArgs) -> Result<u8, Error> {
    let (dbs, manifest) = databases::chosen(file, &args.databases, "metrics")?;
    let Some(addr) = &args.listen else {
        let text = exposition(&dbs, manifest.as_ref(), args.format)?;
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return Ok(0);
    };
    let listener = TcpListener::bind(addr.as_str()).map_err(|source| Error::Io {
        action: format!("listen on {addr} (give a free HOST:PORT, e.g. 127.0.0.1:9464)"),
        source,
    })?;
    let bound = listener
        .local_addr()
        .map_or(addr.clone(), |a| a.to_string());
    tracing::warn!("serving lock metrics at http://{bound}/metrics");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if let Err(e) = serve(stream, &dbs, manifest.as_ref()) {
            tracing::debug!("a metrics request failed: {e}");
        }
    }
    Ok(0)
}

/// The metrics text, read afresh from the journals and queues.
fn exposition(
    dbs: &[Database],
    manifest: Option<&Manifest>,
    format: Format,
) -> Result<String, Error> {
    let histories = crate::history::load(dbs, manifest, None, SystemTime::now())?;
    let report = occupancy::report(dbs);
    let live: Vec<Live> = histories
        .iter()
        .map(|h| {
            let mut live = Live::default();
            if let Some(d) = report.databases.iter().find(|d| d.path == h.database) {
                for p in &d.holders {
                    *live.holders.entry(p.program.clone()).or_default() += 1;
                }
                for p in &d.waiters {
                    *live.waiters.entry(p.program.clone()).or_default() += 1;
                }
            }
            live
        })
        .collect();
    Ok(metrics::render(&histories, &live, format))
}

/// One HTTP/1.1 exchange: `GET /metrics` gets the exposition, anything else
/// a 404 or 405; the connection is closed after.
fn serve(
    mut stream: TcpStream,
    dbs: &[Database],
    manifest: Option<&Manifest>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?.take_limit());
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Headers, up to the blank line (bounded by take_limit): the format
    // is the one the scraper accepts (Prometheus asks for OpenMetrics).
    let mut format = Format::Prometheus;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("accept") {
                format = Format::accepted(value);
            }
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => match exposition(dbs, manifest, format) {
            Ok(text) => ("200 OK", format.content_type(), text),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ),
        },
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "dblaunch serves its metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// A request's head is small: read at most 16 KiB of it.
trait TakeLimit: std::io::Read + Sized {
    fn take_limit(self) -> std::io::Take<Self> {
        self.take(16 * 1024)
    }
}

impl<R: std::io::Read> TakeLimit for R {}
