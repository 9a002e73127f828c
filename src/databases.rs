//! Which databases a command is about (`status`, `history`, `metrics`,
//! `ps`): the paths or manifest names it was given, else every database of
//! the manifest; and what the manifest calls a database.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dblaunch_lock::Database;

use crate::error::Error;
use crate::manifest::{self, Manifest, ManifestError};
use crate::project;

/// The databases a command is about (`status`, `history`, `metrics`): the
/// given paths or manifest database names, else every database of the
/// manifest; and the manifest when there is one (its names, backend and
/// keys).
pub fn chosen(
    file: Option<&Path>,
    given: &[PathBuf],
    command: &str,
) -> Result<(Vec<Database>, Option<Manifest>), Error> {
    let cwd = project::current_dir()?;
    let mut dbs = BTreeSet::new();
    if given.is_empty() {
        let manifest = project::load_manifest(file).map_err(|e| match e {
            Error::Manifest(ManifestError::NotFound { what }) => Error::Usage(format!(
                "{what}; or name the databases: dblaunch {command} PATH..."
            )),
            other => other,
        })?;
        let mut all: Vec<PathBuf> = manifest.databases.iter().map(|(_, p)| p.clone()).collect();
        for p in &manifest.programs {
            all.extend(p.locks().map(|(d, _)| d.path.clone()));
        }
        for p in all {
            dbs.insert(Database::resolve(&p, &manifest.dir)?);
        }
        return Ok((dbs.into_iter().collect(), Some(manifest)));
    }
    // A bare word that is not a file here may be a manifest database name.
    let named = |p: &PathBuf| p.components().count() == 1 && !cwd.join(p).exists();
    let manifest = if given.iter().any(named) {
        manifest::locate(file, &cwd)
            .ok()
            .map(|path| manifest::load(&path))
            .transpose()?
    } else {
        project::manifest_with_backend(file, &cwd)?
    };
    for p in given {
        let by_name = manifest.as_ref().filter(|_| named(p)).and_then(|m| {
            m.databases
                .iter()
                .find(|(n, _)| Path::new(n) == p.as_path())
                .map(|(_, path)| (path.clone(), m.dir.clone()))
        });
        dbs.insert(match by_name {
            Some((path, dir)) => Database::resolve(&path, &dir)?,
            None => Database::resolve(p, &cwd)?,
        });
    }
    Ok((dbs.into_iter().collect(), manifest))
}

/// A database's name in the manifest, if it has one.
pub fn name_of(manifest: Option<&Manifest>, db: &Database) -> Option<String> {
    let m = manifest?;
    m.databases
        .iter()
        .find(|(_, p)| Database::resolve(p, &m.dir).is_ok_and(|d| d == *db))
        .map(|(n, _)| n.clone())
}
