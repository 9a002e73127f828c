//! Every chosen database's history in a window, from the journals: the
//! lock backend's when one is configured and answers (every host's lines),
//! else each database's own (this host's, and those of hosts sharing its
//! lock directory).

use std::time::SystemTime;

use dblaunch_lock::Database;

use crate::databases;
use crate::error::Error;
use crate::manifest::Manifest;

use super::build::build;
use super::model::History;

/// Every database's history in the window.
pub fn load(
    dbs: &[Database],
    manifest: Option<&Manifest>,
    since: Option<SystemTime>,
    now: SystemTime,
) -> Result<Vec<History>, Error> {
    // With a backend, its journal has every host's lines (this host's
    // included); without one, or when it cannot be read, each database's
    // own journal has this host's (and those of hosts sharing its lock
    // directory).
    let keys: Vec<String> = dbs
        .iter()
        .map(|db| crate::project::backend_key(manifest, db))
        .collect();
    let remote = match crate::project::remote(manifest) {
        Ok(Some(remote)) => match remote.backend.journal(&keys) {
            Ok(rows) => Some((remote.backend.server(), rows)),
            Err(e) => {
                tracing::warn!("{e}; showing this host's journal only");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("{e}; showing this host's journal only");
            None
        }
    };
    dbs.iter()
        .zip(&keys)
        .map(|(db, key)| {
            let dir = db.lock_dir();
            let read = match &remote {
                Some((server, rows)) => {
                    let mut read = dblaunch_lock::journal::Contents::default();
                    let source = format!("the journal of {key} in {server}");
                    for (n, (_, line)) in rows.iter().filter(|(k, _)| k == key).enumerate() {
                        read.push(line.as_bytes(), &source, n);
                    }
                    read.lines.sort_by(|a, b| a.at.cmp(&b.at));
                    read
                }
                None => dblaunch_lock::journal::read(&dir).map_err(|source| Error::Io {
                    action: format!("read the lock journal in {}", dir.display()),
                    source,
                })?,
            };
            let mut h = build(&db.path().to_string_lossy(), &read.lines, since, now);
            h.name = databases::name_of(manifest, db);
            h.skipped_lines = read.skipped;
            Ok(h)
        })
        .collect()
}
