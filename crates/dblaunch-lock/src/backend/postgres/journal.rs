//! The journal in the backend, so that history covers every host: each
//! process sends its journal lines
//! to a thread of its own, which writes them on a session of its own in
//! batches, so a launch never waits for the server to record history.
//! Rows older than [`KEEP_DAYS`] are deleted whenever a writer connects.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::Client;

use super::connect::Connector;
use super::schema::ensure_schema;
use crate::backend::BackendError;

/// How long the backend keeps journal rows.
pub const KEEP_DAYS: i32 = 30;

enum Msg {
    Line { key: String, line: String },
    Flush(mpsc::Sender<()>),
}

/// The sending end, started on first use.
#[derive(Default)]
pub struct Writer {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
}

impl Writer {
    fn sender(&self, connector: &Arc<Connector>, lease: Duration) -> Option<mpsc::Sender<Msg>> {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.is_none() {
            let (send, recv) = mpsc::channel();
            let connector = Arc::clone(connector);
            let spawned = std::thread::Builder::new()
                .name("dblaunch-journal".into())
                .spawn(move || write_all(&connector, lease, &recv));
            if spawned.is_ok() {
                *tx = Some(send);
            }
        }
        tx.clone()
    }

    pub fn record(&self, connector: &Arc<Connector>, lease: Duration, key: &str, line: &str) {
        if let Some(tx) = self.sender(connector, lease) {
            let _ = tx.send(Msg::Line {
                key: key.to_owned(),
                line: line.to_owned(),
            });
        }
    }

    /// Waits (at most `within`) until every line sent so far is written.
    pub fn flush(&self, within: Duration) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(tx) = tx {
            let (done, wait) = mpsc::channel();
            if tx.send(Msg::Flush(done)).is_ok() {
                let _ = wait.recv_timeout(within);
            }
        }
    }
}

fn write_all(connector: &Connector, lease: Duration, recv: &mpsc::Receiver<Msg>) {
    let mut client: Option<Client> = None;
    let mut warned = false;
    let mut batch: Vec<(String, String)> = Vec::new();
    let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
    while let Ok(first) = recv.recv() {
        // Everything already queued goes in one statement.
        for msg in std::iter::once(first).chain(recv.try_iter()) {
            match msg {
                Msg::Line { key, line } => batch.push((key, line)),
                Msg::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            let deadline = Instant::now() + lease;
            loop {
                match insert(&mut client, connector, lease, &batch) {
                    Ok(()) => break,
                    Err(e) => {
                        client = None;
                        if !warned {
                            warned = true;
                            tracing::warn!(
                                "cannot write the lock journal to the lock backend: {e}; other hosts' `dblaunch history` will miss what this dblaunch does"
                            );
                        }
                        if Instant::now() >= deadline {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

fn insert(
    client: &mut Option<Client>,
    connector: &Connector,
    lease: Duration,
    batch: &[(String, String)],
) -> Result<(), BackendError> {
    if client.is_none() {
        let mut c = connector.connect(lease)?;
        ensure_schema(&mut c).map_err(|e| connector.classify(&e))?;
        let _ = c.execute(
            "DELETE FROM dblaunch_journal WHERE at < now() - make_interval(days => $1)",
            &[&KEEP_DAYS],
        );
        *client = Some(c);
    }
    let c = client.as_mut().expect("connected above");
    let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
    let lines: Vec<&str> = batch.iter().map(|(_, l)| l.as_str()).collect();
    c.execute(
        "INSERT INTO dblaunch_journal (key, line) SELECT * FROM unnest($1::text[], $2::text[])",
        &[&keys, &lines],
    )
    .map_err(|e| connector.classify(&e))?;
    Ok(())
}

/// The journal lines of `keys`, oldest first.
pub fn read(
    client: &mut Client,
    keys: &[String],
) -> Result<Vec<(String, String)>, postgres::Error> {
    Ok(client
        .query(
            "SELECT key, line FROM dblaunch_journal WHERE key = ANY($1) ORDER BY id",
            &[&keys],
        )?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
