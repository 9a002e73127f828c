//! Watched paths (`watch`), with no polling: one inotify instance, read on
//! the supervisor's thread with its other events, a watch on every
//! directory under a watched one (new directories are watched as they
//! appear). What a program's changes are is decided here: a path under one
//! of its watched paths, not ignored. Ignored: what the `.gitignore` and
//! `.ignore` files of the project ignore (whether or not it is a git
//! repository), the defaults below, the program's own `ignore` patterns,
//! and the manifest's database files. The debounce is the supervisor's (a
//! deadline of its loop).
//!
//! Why inotify directly, not the `notify` crate: notify reads inotify on a
//! thread of its own and hands events over a channel, and its debouncer
//! adds another thread and timer; here the descriptor joins the poll(2) the
//! loop already sleeps in, and the debounce is one more deadline of the
//! loop, so a change costs no thread hop. The `ignore` crate gives
//! `.gitignore`'s exact rules (negation, anchoring, `**`, directory-only
//! patterns).

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// Ignored in every watched tree, whatever the ignore files say: version
/// control, dblaunch's own files and lock directories, build output and
/// dependencies, editors' swap and backup files.
pub const DEFAULT_IGNORES: [&str; 10] = [
    ".git/",
    ".dblaunch/",
    ".*.dblaunch/",
    "target/",
    "node_modules/",
    "*.swp",
    "*.swx",
    "*~",
    ".#*",
    "4913",
];

/// The files whose rules are read in each directory (`.ignore` wins).
const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

pub struct Watcher {
    inotify: Inotify,
    project: PathBuf,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    /// Directories watched for their whole tree.
    trees: HashSet<PathBuf>,
    /// Each directory's `.gitignore` and `.ignore` rules, when it has any.
    rules: HashMap<PathBuf, Gitignore>,
    /// The defaults, and the databases' files.
    defaults: Gitignore,
    programs: Vec<Watched>,
}

struct Watched {
    program: usize,
    /// Directories (their trees) and files.
    roots: Vec<PathBuf>,
    /// Its own `ignore` patterns.
    own: Gitignore,
}

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ONLYDIR
}

fn rules(root: &Path, lines: impl IntoIterator<Item = String>) -> Gitignore {
    let mut b = GitignoreBuilder::new(root);
    for l in lines {
        // Checked when the manifest was read.
        let _ = b.add_line(None, &l);
    }
    b.build().unwrap_or_else(|_| Gitignore::empty())
}

impl Watcher {
    /// `project`: the manifest's directory; `databases`: the run's database
    /// files (their changes, and their journals', never restart anyone).
    pub fn new(project: &Path, databases: &[PathBuf]) -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|e| {
            if e == Errno::EMFILE {
                io::Error::other(format!(
                    "the system's limit of inotify instances is reached (fs.inotify.max_user_instances = {}); raise it with `sysctl fs.inotify.max_user_instances=1024` (as root)",
                    limit("max_user_instances")
                ))
            } else {
                e.into()
            }
        })?;
        let mut lines: Vec<String> = DEFAULT_IGNORES.iter().map(|s| s.to_string()).collect();
        for db in databases {
            if let Ok(rel) = db.strip_prefix(project) {
                let rel = rel.display();
                // SQLite's journal and WAL, DuckDB's WAL.
                lines.push(format!("/{rel}"));
                lines.push(format!("/{rel}-*"));
                lines.push(format!("/{rel}.wal"));
            }
        }
        Ok(Watcher {
            inotify,
            project: project.to_path_buf(),
            dirs: HashMap::new(),
            trees: HashSet::new(),
            rules: HashMap::new(),
            defaults: rules(project, lines),
            programs: Vec::new(),
        })
    }

    /// Watches `paths` for program `program`, with its `ignore` patterns.
    pub fn add(&mut self, program: usize, paths: &[PathBuf], ignore: &[String]) -> io::Result<()> {
        // The ignore files between the project and each watched path.
        for p in paths {
            let mut dir = self.project.clone();
            self.load_rules(&dir);
            if let Ok(rel) = p.strip_prefix(&self.project) {
                for c in rel.parent().into_iter().flat_map(|r| r.components()) {
                    dir.push(c);
                    self.load_rules(&dir);
                }
            }
        }
        for p in paths {
            if p.is_dir() {
                self.walk(p)?;
            } else if let Some(parent) = p.parent() {
                // A file is watched through its directory: editors replace
                // files by renaming a new one over them.
                self.watch_dir(parent)?;
            }
        }
        self.programs.push(Watched {
            program,
            roots: paths.to_vec(),
            own: rules(&self.project, ignore.iter().cloned()),
        });
        Ok(())
    }

    fn load_rules(&mut self, dir: &Path) {
        let present: Vec<PathBuf> = IGNORE_FILES
            .iter()
            .map(|f| dir.join(f))
            .filter(|f| f.is_file())
            .collect();
        if present.is_empty() {
            self.rules.remove(dir);
            return;
        }
        let mut b = GitignoreBuilder::new(dir);
        for f in &present {
            if let Some(e) = b.add(f) {
                tracing::warn!("{}: {e}", f.display());
            }
        }
        match b.build() {
            Ok(g) => {
                self.rules.insert(dir.to_path_buf(), g);
            }
            Err(e) => tracing::warn!("cannot read the ignore files of {}: {e}", dir.display()),
        }
    }

    fn watch_dir(&mut self, dir: &Path) -> io::Result<()> {
        match self.inotify.add_watch(dir, mask()) {
            Ok(wd) => {
                self.dirs.insert(wd, dir.to_path_buf());
                Ok(())
            }
            Err(Errno::ENOSPC) => Err(io::Error::other(format!(
                "the system's limit of inotify watches is reached (fs.inotify.max_user_watches = {}); raise it with `sysctl fs.inotify.max_user_watches=524288` (as root), or watch fewer directories, or ignore more of them",
                limit("max_user_watches")
            ))),
            Err(e) => Err(io::Error::other(format!(
                "cannot watch {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Watches `dir` and every directory under it that is not ignored.
    fn walk(&mut self, dir: &Path) -> io::Result<()> {
        if !self.trees.insert(dir.to_path_buf()) {
            return Ok(());
        }
        self.load_rules(dir);
        self.watch_dir(dir)?;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let path = e.path();
            if is_dir && !self.ignored(&path, true) {
                self.walk(&path)?;
            }
        }
        Ok(())
    }

    /// Whether the defaults or an ignore file ignores `path`.
    fn ignored(&self, path: &Path, is_dir: bool) -> bool {
        if self.defaults.matched(path, is_dir).is_ignore() {
            return true;
        }
        // The deepest directory's rules decide first.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if let Some(g) = self.rules.get(d) {
                match g.matched_path_or_any_parents(path, is_dir) {
                    Match::Ignore(_) => return true,
                    Match::Whitelist(_) => return false,
                    Match::None => {}
                }
            }
            if d == self.project {
                break;
            }
            dir = d.parent();
        }
        false
    }

    /// The programs whose watched paths changed since the last call, each
    /// with the first path seen; never blocks.
    pub fn changes(&mut self) -> Vec<(usize, PathBuf)> {
        let mut changed: Vec<(usize, PathBuf)> = Vec::new();
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) if !e.is_empty() => e,
                _ => break,
            };
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: anything may have changed.
                    for w in &self.programs {
                        if !changed.iter().any(|(p, _)| *p == w.program) {
                            changed.push((w.program, self.project.clone()));
                        }
                    }
                    continue;
                }
                if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                    if let Some(dir) = self.dirs.remove(&e.wd) {
                        self.trees.remove(&dir);
                    }
                    continue;
                }
                let (Some(dir), Some(name)) = (self.dirs.get(&e.wd).cloned(), e.name.as_ref())
                else {
                    continue;
                };
                let path = dir.join(name);
                let is_dir = e.mask.contains(AddWatchFlags::IN_ISDIR);
                if IGNORE_FILES.iter().any(|f| name == f) {
                    self.load_rules(&dir);
                }
                if self.ignored(&path, is_dir) {
                    continue;
                }
                let in_tree = self.trees.contains(&dir);
                if is_dir
                    && in_tree
                    && e.mask
                        .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                {
                    if let Err(err) = self.walk(&path) {
                        tracing::warn!("{err}");
                    }
                }
                for w in &self.programs {
                    let mine = w.roots.iter().any(|r| path.starts_with(r));
                    if mine
                        && !w.own.matched(&path, is_dir).is_ignore()
                        && !changed.iter().any(|(p, _)| *p == w.program)
                    {
                        changed.push((w.program, path.clone()));
                    }
                }
            }
        }
        changed
    }
}

/// `/proc/sys/fs/inotify/NAME`, for messages.
fn limit(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

impl AsFd for Watcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}
