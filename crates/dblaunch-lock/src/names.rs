//! What a program's database argument names, as `dblaunch exec` reads it:
//! a path when it has a `/` or a `.` (it need not exist yet), else the name
//! of an entry of the project manifest's `[databases]`, so that a typo
//! cannot lock a stray file. The manifest is `$DBLAUNCH_FILE` (which
//! dblaunch sets for the programs it starts), else the first `dblaunch.toml`
//! in the current directory or a parent. It also says whether locks go
//! through a lock backend (`[backend]`, or `$DBLAUNCH_BACKEND`) and each
//! database's key there.
//!
//! Only `[databases]` and `[backend]` are read here; `dblaunch check`
//! validates the whole manifest. A parsed manifest is kept for the
//! process's life and read again when its file changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::backend::{self, Config};
use crate::database::Database;
use crate::error::LockError;

/// The variable that names the manifest.
pub const FILE_ENV: &str = "DBLAUNCH_FILE";
/// The manifest's file name, looked for in the current directory and its
/// parents.
pub const MANIFEST: &str = "dblaunch.toml";

/// Whether a database argument is a path (it has a `/` or a `.`) rather
/// than the name of an entry of the manifest's `[databases]`.
pub fn is_path(given: &str) -> bool {
    given.contains('/') || given.contains('.')
}

/// The known name closest to `name`, if any is close enough to be a typo
/// (optimal string alignment: a swap of two letters, `mian`, is one edit).
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::osa_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The parts of a manifest that locking needs.
#[derive(Debug)]
pub struct Project {
    /// The manifest's path.
    pub path: PathBuf,
    /// Its directory: relative paths in it are relative to this.
    pub dir: PathBuf,
    /// `[databases]`: each name, its path (relative to `dir`) and its key
    /// in the lock backend, in the manifest's order.
    pub databases: Vec<(String, PathBuf, Option<String>)>,
    /// `[backend]`: its `url` (the environment may give it instead) and
    /// `lease`.
    pub backend: Option<(Option<String>, Option<Duration>)>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    databases: BTreeMap<String, RawDatabase>,
    backend: Option<RawBackend>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDatabase {
    Path(String),
    Keyed { path: String, key: Option<String> },
}

#[derive(Deserialize)]
struct RawBackend {
    url: Option<String>,
    lease: Option<String>,
}

/// Why a database argument names nothing lockable.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// A bare word, and no manifest to look it up in.
    #[error(
        "`{name}` is not a path (it has no `/` or `.`), so it must name a database of the manifest's [databases], but {why}. To lock a file of that name, write `./{name}`"
    )]
    NoManifest {
        /// The name given.
        name: String,
        /// Why there is no manifest.
        why: String,
    },
    /// A bare word the manifest does not know.
    #[error(
        "`{name}` is not a database of {manifest} ({hint}); a bare word names an entry of [databases], so a typo cannot lock a stray file. To lock a file of that name, write `./{name}`",
        manifest = .manifest.display()
    )]
    Unknown {
        /// The name given.
        name: String,
        /// The manifest.
        manifest: PathBuf,
        /// The closest name, or the names it has.
        hint: String,
    },
    /// The manifest cannot be read or is not TOML of the expected shape.
    #[error(
        "cannot read the manifest {path}: {why}; fix it (`dblaunch check` says where) or name the database by its path",
        path = .path.display()
    )]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The path is not a database.
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl Project {
    /// The manifest in force for this process: `explicit`, else
    /// `$DBLAUNCH_FILE`, else the first `dblaunch.toml` in `cwd` or a
    /// parent; `Ok(None)` when there is none.
    pub fn find(explicit: Option<&Path>, cwd: &Path) -> Result<Option<Arc<Project>>, NameError> {
        let named = explicit.map(Path::to_path_buf).or_else(|| {
            std::env::var_os(FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let path = match named {
            Some(p) => {
                let p = cwd.join(p);
                if !p.is_file() {
                    return Err(NameError::BadManifest {
                        why: "it does not exist or is not a file".to_owned(),
                        path: p,
                    });
                }
                p
            }
            None => match cwd
                .ancestors()
                .map(|d| d.join(MANIFEST))
                .find(|c| c.is_file())
            {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        Project::load(&path).map(Some)
    }

    /// Reads the manifest at `path`, or takes it from the process's cache
    /// when the file has not changed since.
    fn load(path: &Path) -> Result<Arc<Project>, NameError> {
        type Cached = Option<(PathBuf, Option<SystemTime>, Arc<Project>)>;
        static CACHE: Mutex<Cached> = Mutex::new(None);
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        crate::fork::protect(&CACHE);
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, m, project)) = cache.as_ref() {
            if p == path && *m == modified && modified.is_some() {
                return Ok(Arc::clone(project));
            }
        }
        let bad = |why: String| NameError::BadManifest {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let raw: Raw = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let databases = raw
            .databases
            .into_iter()
            .map(|(name, db)| match db {
                RawDatabase::Path(p) => (name, PathBuf::from(p), None),
                RawDatabase::Keyed { path, key } => (name, PathBuf::from(path), key),
            })
            .collect();
        let backend = match raw.backend {
            None => None,
            Some(b) => {
                let lease = match b.lease {
                    None => None,
                    Some(l) => Some(
                        backend::parse_lease(&l)
                            .map_err(|e| bad(format!("[backend] lease {l:?}: {e}")))?,
                    ),
                };
                Some((b.url, lease))
            }
        };
        let project = Arc::new(Project {
            path: path.to_path_buf(),
            dir,
            databases,
            backend,
        });
        *cache = Some((path.to_path_buf(), modified, Arc::clone(&project)));
        Ok(project)
    }

    /// The database `name` (an entry of `[databases]`) stands for.
    pub fn database(&self, name: &str) -> Result<Database, NameError> {
        let Some((_, path, _)) = self.databases.iter().find(|(n, _, _)| n == name) else {
            let names = || self.databases.iter().map(|(n, _, _)| n.as_str());
            let hint = match closest(name, names()) {
                Some(c) => format!("did you mean `{c}`?"),
                None if self.databases.is_empty() => "it names no databases".to_owned(),
                None => format!(
                    "its databases are: {}",
                    names().collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(NameError::Unknown {
                name: name.to_owned(),
                manifest: self.path.clone(),
                hint,
            });
        };
        Ok(Database::resolve(path, &self.dir)?)
    }

    /// The backend key of `db`: the `key` of the entry of `[databases]`
    /// that leads to it, else its canonical path (right when every host
    /// mounts the share at the same place).
    pub fn key(&self, db: &Database) -> String {
        self.databases
            .iter()
            .find(|(_, p, _)| Database::resolve(p, &self.dir).is_ok_and(|d| d == *db))
            .and_then(|(_, _, k)| k.clone())
            .unwrap_or_else(|| db.path().to_string_lossy().into_owned())
    }

    /// The backend configuration: `$DBLAUNCH_BACKEND` over `[backend] url`,
    /// `$DBLAUNCH_LEASE` over `lease`; `None` to lock on this host only.
    pub fn backend(project: Option<&Project>) -> Result<Option<Config>, String> {
        let (url, lease) = project
            .and_then(|p| p.backend.clone())
            .unwrap_or((None, None));
        let env = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let Some(url) = env(backend::BACKEND_ENV).or(url) else {
            return Ok(None);
        };
        let lease = match env(backend::LEASE_ENV) {
            Some(l) => backend::parse_lease(&l)
                .map_err(|e| format!("{}={l:?} is not a lease: {e}", backend::LEASE_ENV))?,
            None => lease.unwrap_or(backend::DEFAULT_LEASE),
        };
        Ok(Some(Config { url, lease }))
    }
}

/// Resolves a database argument: a path relative to `cwd`, or a name of
/// `project`'s `[databases]`.
pub fn resolve(given: &str, project: Option<&Project>, cwd: &Path) -> Result<Database, NameError> {
    if is_path(given) {
        return Ok(Database::resolve(Path::new(given), cwd)?);
    }
    match project {
        Some(p) => p.database(given),
        None => Err(NameError::NoManifest {
            name: given.to_owned(),
            why: format!(
                "there is no manifest: no {FILE_ENV} and no {MANIFEST} in {} or any parent directory",
                cwd.display()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_typos() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("data")).unwrap();
        let manifest = tmp.path().join(MANIFEST);
        std::fs::write(
            &manifest,
            "[databases]\nletters = \"data/letters.duckdb\"\nevents = { path = \"data/ev\", key = \"ev\" }\n[programs.x]\ncommand = \"true\"\n",
        )
        .unwrap();
        let project = Project::find(Some(&manifest), tmp.path()).unwrap().unwrap();
        let sub = tmp.path().join("data");
        let by_name = resolve("letters", Some(&project), &sub).unwrap();
        let by_path = resolve("./letters.duckdb", Some(&project), &sub).unwrap();
        assert_eq!(by_name, by_path);
        assert_eq!(project.key(&by_name), by_name.path().to_string_lossy());
        let events = resolve("events", Some(&project), tmp.path()).unwrap();
        assert_eq!(project.key(&events), "ev");
        let typo = resolve("leters", Some(&project), tmp.path()).unwrap_err();
        assert!(
            typo.to_string().contains("did you mean `letters`?"),
            "{typo}"
        );
        let none = resolve("letters", None, tmp.path()).unwrap_err();
        assert!(none.to_string().contains("./letters"), "{none}");
    }
}
