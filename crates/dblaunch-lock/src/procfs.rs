//! Reading `/proc`: process start times, command lines, the boot id,
//! `/proc/locks` and the open descriptors of other processes.
//!
//! Everything here is best effort: a process can vanish between two reads, so
//! every function answers "don't know" (`None`, an empty list) rather than
//! failing when a file disappears under it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

/// The start time of `pid` in clock ticks after boot (field 22 of
/// `/proc/PID/stat`). Together with the pid and the boot id it names one
/// process for the life of the machine: a recycled pid has another start time.
///
/// `None` for a process that is gone, and for a zombie: it has ended and can
/// touch no database, even while nobody has reaped it yet (in a container
/// whose init does not reap, that can be forever).
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = read_small(&format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may itself contain
    // spaces and parentheses, so split after the last ')'.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    // `rest` starts at field 3 (state); field 22 is 19 further on.
    if matches!(rest.next()?, "Z" | "X" | "x") {
        return None;
    }
    rest.nth(18)?.parse().ok()
}

/// The kernel's clock for start times: CLOCK_BOOTTIME, read before and after
/// a process is made, brackets the instant the kernel stamped on it
/// (`start_boottime`, set in `clone`). [`start_time_between`] turns two
/// readings into that start time without reading `/proc`.
pub fn boot_clock() -> Option<std::time::Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(std::time::Duration::new(
        u64::try_from(t.tv_sec()).ok()?,
        u32::try_from(t.tv_nsec()).ok()?,
    ))
}

/// The start time (as [`start_time`] reads it) of a process made between two
/// readings of [`boot_clock`], when both fall in the same clock tick: the
/// kernel reports `start_boottime` in whole ticks, so that tick is exact.
/// `None` when a tick boundary lies between them (a few percent of spawns):
/// then read `/proc`.
pub fn start_time_between(
    before: Option<std::time::Duration>,
    after: Option<std::time::Duration>,
) -> Option<u64> {
    // SAFETY: sysconf has no preconditions (glibc answers from the auxiliary
    // vector, without a system call).
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    let tick_ns = 1_000_000_000u64.checked_div(hz)?;
    if tick_ns == 0 || 1_000_000_000 % hz != 0 {
        return None;
    }
    let ticks = |d: std::time::Duration| u64::try_from(d.as_nanos() / u128::from(tick_ns)).ok();
    let (a, b) = (ticks(before?)?, ticks(after?)?);
    (a == b).then_some(a)
}

/// Reads a small /proc file with one read(2): /proc files report size 0, so
/// `fs::read_to_string` would grow its buffer over several reads.
fn read_small(path: &str) -> Option<String> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(buf[..len].to_vec()).ok()
}

/// `/proc/sys/kernel/random/boot_id`: distinguishes this boot from earlier ones,
/// so a record written before a reboot is never believed after it.
pub fn boot_id() -> &'static str {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    BOOT_ID.get_or_init(|| {
        read_small("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

/// The argv of `pid`, or an empty list for a zombie, a kernel thread or a
/// process that is gone.
pub fn cmdline(pid: i32) -> Vec<String> {
    let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    raw.split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

/// The command line of `pid` for a message: its argv, or its `comm` name in
/// brackets when the argv cannot be read.
pub fn describe(pid: i32) -> String {
    let argv = cmdline(pid);
    if argv.is_empty() {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        return format!("[{}]", comm.trim());
    }
    argv.join(" ")
}

/// A file's identity as `/proc/locks` and `stat(2)` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The device's major number.
    pub major: u64,
    /// The device's minor number.
    pub minor: u64,
    /// The inode.
    pub ino: u64,
}

impl FileId {
    /// The file `meta` describes.
    pub fn of(meta: &fs::Metadata) -> FileId {
        let dev = meta.dev();
        FileId {
            major: libc::major(dev) as u64,
            minor: libc::minor(dev) as u64,
            ino: meta.ino(),
        }
    }

    /// The file at `path` (not followed if a symlink); `None` if it cannot be read.
    pub fn of_path(path: &Path) -> Option<FileId> {
        fs::metadata(path).ok().map(|m| FileId::of(&m))
    }
}

/// The kernel lock families that `/proc/locks` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockFamily {
    /// flock(2), what dblaunch uses for its tickets.
    Flock,
    /// Classic per-process fcntl locks, what SQLite, DuckDB and RocksDB use.
    Posix,
    /// Open-file-description fcntl locks.
    Ofd,
    /// Leases and anything newer.
    Other,
}

/// One line of `/proc/locks` (blocked requests, the `->` lines, are skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelLock {
    /// flock(2), POSIX or OFD.
    pub family: LockFamily,
    /// An exclusive lock (else shared).
    pub write: bool,
    /// The process that took the lock; `None` for OFD locks, which the kernel
    /// reports as pid -1.
    pub pid: Option<i32>,
    /// The file it is on.
    pub file: FileId,
}

/// Parses `/proc/locks`. Lines look like
/// `1: POSIX  ADVISORY  WRITE 8420 08:01:1234567 0 EOF`
/// (major and minor in hex, the inode in decimal).
pub fn parse_locks(text: &str) -> Vec<KernelLock> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let _id = it.next()?;
            let kind = it.next()?;
            if kind == "->" {
                return None;
            }
            let family = match kind {
                "FLOCK" => LockFamily::Flock,
                "POSIX" => LockFamily::Posix,
                "OFDLCK" => LockFamily::Ofd,
                _ => LockFamily::Other,
            };
            let _advisory = it.next()?;
            let write = match it.next()? {
                "WRITE" => true,
                "READ" => false,
                _ => return None,
            };
            let pid: i32 = it.next()?.parse().ok()?;
            let mut dev = it.next()?.split(':');
            let major = u64::from_str_radix(dev.next()?, 16).ok()?;
            let minor = u64::from_str_radix(dev.next()?, 16).ok()?;
            let ino = dev.next()?.parse().ok()?;
            Some(KernelLock {
                family,
                write,
                pid: (pid > 0).then_some(pid),
                file: FileId { major, minor, ino },
            })
        })
        .collect()
}

/// All locks the kernel holds right now.
pub fn locks() -> Vec<KernelLock> {
    fs::read_to_string("/proc/locks")
        .map(|t| parse_locks(&t))
        .unwrap_or_default()
}

/// Processes that have one of `files` open, with whether their descriptor
/// carries a lock (the `lock:` lines of `/proc/PID/fdinfo/FD` list only the
/// locks that belong to that open file description, so they name the real
/// holder even when the process that took the lock is long gone).
pub fn openers(files: &[FileId]) -> Vec<Opener> {
    let mut found: Vec<Opener> = Vec::new();
    for u in fd_uses(files) {
        match found.last_mut() {
            Some(o) if o.pid == u.pid => {
                o.locked |= u.locked;
                o.write_lock |= u.write_lock;
            }
            _ => found.push(Opener {
                pid: u.pid,
                locked: u.locked,
                write_lock: u.write_lock,
            }),
        }
    }
    found
}

/// One open descriptor of one of the files asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdUse {
    /// The process.
    pub pid: i32,
    /// The file.
    pub file: FileId,
    /// It holds a lock on it.
    pub locked: bool,
    /// The lock is exclusive.
    pub write_lock: bool,
}

/// Every open descriptor of every process we may look into, as
/// `(pid, fd, /proc/PID/fd/FD)`: one pass over `/proc/*/fd`. Processes and
/// descriptors that vanish meanwhile are skipped.
fn descriptors() -> impl Iterator<Item = (i32, i32, std::path::PathBuf)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .flat_map(|pid| descriptors_of(&pid.to_string()).map(move |(fd, link)| (pid, fd, link)))
}

/// The open descriptors of one process (`"self"` for this one), as
/// `(fd, /proc/PID/fd/FD)`.
pub fn descriptors_of(pid: &str) -> impl Iterator<Item = (i32, std::path::PathBuf)> + use<> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<i32>().ok()?, e.path())))
}

/// The descriptors open in this process, in ascending order.
///
/// One poll(2) over every number below the descriptor limit finds them
/// (closed ones come back POLLNVAL), without `/proc/self/fd`, whose entries
/// cost a directory read and, at exit, a clean-up of one dentry per
/// descriptor. A process whose limit is too high for one cheap call (some
/// containers allow a million descriptors) lists `/proc/self/fd` instead.
pub fn own_descriptors() -> Vec<i32> {
    const MOST_POLLED: u64 = 4096;
    // SAFETY: an all-zero rlimit is a valid value; getrlimit fills it.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the struct we own.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let listed = || {
        let mut fds: Vec<i32> = descriptors_of("self").map(|(fd, _)| fd).collect();
        fds.sort_unstable();
        fds
    };
    if !known || limit.rlim_cur > MOST_POLLED {
        return listed();
    }
    let mut polled: Vec<libc::pollfd> = (0..limit.rlim_cur as i32)
        .map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        })
        .collect();
    // SAFETY: `polled` is a valid array of `polled.len()` pollfds, which is at
    // most RLIMIT_NOFILE, and a zero timeout never blocks.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, 0) };
    if n < 0 {
        return listed();
    }
    polled
        .iter()
        .filter(|p| p.revents & libc::POLLNVAL == 0)
        .map(|p| p.fd)
        .collect()
}

/// Every descriptor, in every process we may look into, open on one of
/// `files`; grouped by pid. One pass over `/proc/*/fd`, so ask for all files
/// of interest at once.
pub fn fd_uses(files: &[FileId]) -> Vec<FdUse> {
    if files.is_empty() {
        return Vec::new();
    }
    descriptors()
        .filter_map(|(pid, fd, link)| {
            // stat() follows the magic link to the open file itself.
            let file = FileId::of(&fs::metadata(link).ok()?);
            if !files.contains(&file) {
                return None;
            }
            let fdinfo = read_small(&format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
            let mut u = FdUse {
                pid,
                file,
                locked: false,
                write_lock: false,
            };
            for line in fdinfo.lines().filter(|l| l.starts_with("lock:")) {
                u.locked = true;
                u.write_lock |= line.contains("WRITE");
            }
            Some(u)
        })
        .collect()
}

/// Descriptors, in every process we may look into, open on a file that was
/// in `dir` and has been deleted (its link reads `DIR/NAME (deleted)`), whose
/// name passes `is_ours` and whose open file description holds a flock:
/// processes that still hold a lock of a removed lock directory. One pass
/// over every descriptor of the machine: only for the rare moment a lock
/// directory is made anew.
pub fn deleted_locked_files(dir: &Path, is_ours: impl Fn(&str) -> bool) -> Vec<(i32, i32)> {
    descriptors()
        .filter(|(pid, fd, link)| {
            fs::read_link(link).is_ok_and(|t| deleted_in(&t, dir).is_some_and(&is_ours))
                && holds_flock(*pid, *fd)
        })
        .map(|(pid, fd, _)| (pid, fd))
        .collect()
}

/// Whether `pid`'s descriptor `fd` is still a deleted, flocked file of `dir`.
/// When we may not look (another user's process), the answer is yes: a lock
/// that cannot be seen to be gone is treated as held.
pub fn deleted_locked_fd(pid: i32, fd: i32, dir: &Path) -> bool {
    match fs::read_link(format!("/proc/{pid}/fd/{fd}")) {
        Ok(t) => deleted_in(&t, dir).is_some() && holds_flock(pid, fd),
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

/// The file name of a deleted file that was directly in `dir`.
fn deleted_in<'a>(target: &'a Path, dir: &Path) -> Option<&'a str> {
    let shown = target.to_str()?.strip_suffix(" (deleted)")?;
    let (parent, name) = shown.rsplit_once('/')?;
    // The directory itself was removed, so its name may also carry the
    // marker in some kernels' spelling; compare the path as it was.
    (Path::new(parent.trim_end_matches(" (deleted)")) == dir).then_some(name)
}

/// Whether the open file description behind `pid`'s descriptor `fd`
/// carries a flock (the `lock:` lines of its fdinfo).
pub fn holds_flock(pid: i32, fd: i32) -> bool {
    read_small(&format!("/proc/{pid}/fdinfo/{fd}")).is_some_and(|info| {
        info.lines()
            .any(|l| l.starts_with("lock:") && l.contains("FLOCK"))
    })
}

/// The parent of `pid`.
pub fn ppid(pid: i32) -> Option<i32> {
    stat_field(pid, 1)?.parse().ok()
}

/// The process group of `pid`.
pub fn pgid(pid: i32) -> Option<i32> {
    stat_field(pid, 2)?.parse().ok()
}

/// Field `n` of `/proc/PID/stat`, counted from the state (0) after the
/// command name, which is in parentheses and may itself contain spaces and
/// parentheses.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = read_small(&format!("/proc/{pid}/stat"))?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(n)
        .map(str::to_owned)
}

/// A process found by [`openers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opener {
    /// The process.
    pub pid: i32,
    /// One of its descriptors on the file holds a lock.
    pub locked: bool,
    /// That lock is exclusive.
    pub write_lock: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_is_known_from_the_boot_clock_only_within_one_tick() {
        // (That it is the one /proc reports is checked on real programs, in
        // tests/cli/status_stop.rs: spawning here would hand this test
        // process's descriptors to a child for an instant, under the feet
        // of the lock tests beside it.)
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let tick = std::time::Duration::from_nanos(1_000_000_000 / hz);
        let at = |ticks: u32, plus_ns: u64| {
            Some(tick * ticks + std::time::Duration::from_nanos(plus_ns))
        };
        assert_eq!(start_time_between(at(7, 1), at(7, 900)), Some(7));
        assert_eq!(start_time_between(at(7, 0), at(8, 0)), None);
        assert_eq!(start_time_between(at(7, 5), at(9, 5)), None);
        assert_eq!(start_time_between(None, at(7, 5)), None);
        assert_eq!(start_time_between(at(7, 5), None), None);
        assert!(boot_clock().is_some());
    }

    #[test]
    fn own_descriptors_finds_an_open_descriptor_and_not_a_closed_one() {
        // A high number, which other tests' threads (taking the lowest free
        // numbers) do not reuse between the two looks.
        const HIGH: i32 = 900;
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        // SAFETY: dup2 onto a number this test alone uses; closed below.
        let fd = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), HIGH) };
        assert_eq!(fd, HIGH);
        let found = own_descriptors();
        assert!(found.contains(&HIGH), "{HIGH} not in {found:?}");
        assert!(
            found.windows(2).all(|w| w[0] < w[1]),
            "not in order: {found:?}"
        );
        // SAFETY: closes the descriptor dup2 made above.
        unsafe { libc::close(HIGH) };
        assert!(!own_descriptors().contains(&HIGH));
    }

    #[test]
    fn start_time_of_self_is_stable_and_other_pids_differ() {
        let me = std::process::id() as i32;
        let a = start_time(me).expect("own start time");
        assert_eq!(Some(a), start_time(me));
        assert_eq!(start_time(i32::MAX), None);
    }

    #[test]
    fn parses_proc_locks_lines() {
        let text = "1: POSIX  ADVISORY  WRITE 8420 08:01:1234567 0 EOF\n\
                    1: -> POSIX  ADVISORY  WRITE 9 08:01:1234567 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 77 fd:1a:42 0 EOF\n\
                    3: OFDLCK ADVISORY  READ -1 00:2e:99 0 EOF\n";
        let locks = parse_locks(text);
        assert_eq!(locks.len(), 3);
        assert_eq!(
            locks[0],
            KernelLock {
                family: LockFamily::Posix,
                write: true,
                pid: Some(8420),
                file: FileId {
                    major: 8,
                    minor: 1,
                    ino: 1234567
                }
            }
        );
        assert_eq!(locks[1].file.major, 0xfd);
        assert_eq!(locks[1].file.minor, 0x1a);
        assert!(!locks[1].write);
        assert_eq!(locks[2].pid, None);
        assert_eq!(locks[2].family, LockFamily::Ofd);
    }

    #[test]
    fn cmdline_of_self_names_the_test_binary() {
        let argv = cmdline(std::process::id() as i32);
        assert!(!argv.is_empty());
    }
}
