//! `dblaunch start TARGET...`: `run` in the background. The run gets a
//! session of its own (so closing the terminal, SIGHUP, does not reach it),
//! writes each program's output to `.dblaunch/logs/NAME.log` and its own
//! messages to `.dblaunch/dblaunch.log`, and tells `start` through a pipe how
//! each program started. `stop`, `ps`, `logs` and `restart` reach it later.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cli::RunArgs;
use crate::control;
use crate::error::Error;
use crate::process::READY_FD_ENV;

pub fn execute(file: Option<&Path>, args: RunArgs) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let chosen = crate::project::targets(&manifest, &args.targets)?;
    let names: Vec<&str> = chosen
        .iter()
        .map(|&i| manifest.programs[i].name.as_str())
        .collect();
    let already: Vec<String> = crate::project::running(&manifest)
        .into_iter()
        .filter(|(st, _)| names.contains(&st.program.as_str()) && st.live)
        .map(|(st, run)| {
            format!(
                "{} ({}, in the run of pid {run})",
                st.program,
                st.describe()
            )
        })
        .collect();
    if !already.is_empty() {
        println!("already running, nothing started: {}", already.join(", "));
        return Ok(0);
    }
    let io = |action: String| move |source| Error::Io { action, source };
    let dir = manifest.dir.join(control::DIR);
    fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    let log_path = dir.join("dblaunch.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format!("open {}", log_path.display())))?;
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Io {
            action: "make a pipe".to_owned(),
            source: e.into(),
        })?;
    let exe = std::env::current_exe().map_err(io("find dblaunch's own executable".to_owned()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-f")
        .arg(&manifest.path)
        .arg("run")
        .arg("--detached");
    if let Some(w) = args.wait.wait {
        cmd.arg("--wait")
            .arg(humantime::format_duration(w).to_string());
    }
    if args.wait.no_wait {
        cmd.arg("--no-wait");
    }
    if args.no_watch {
        cmd.arg("--no-watch");
    }
    if let Some(t) = args.wait.stop_timeout {
        cmd.arg("--stop-timeout")
            .arg(humantime::format_duration(t).to_string());
    }
    cmd.arg("--").args(&args.targets);
    let write_fd = write.as_raw_fd();
    cmd.env(READY_FD_ENV, write_fd.to_string())
        .current_dir(&manifest.dir)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(io("duplicate the log".to_owned()))?,
        )
        .stderr(log);
    // SAFETY: setsid and fcntl are async-signal-safe and only touch the
    // child's own session and the descriptor number captured above.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::fcntl(write_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(io("start the background run".to_owned()))?;
    drop(write);
    let mut failed = false;
    for line in BufReader::new(File::from(read))
        .lines()
        .map_while(Result::ok)
    {
        failed |= line.starts_with("failed");
        println!("{line}");
    }
    println!(
        "running in the background as pid {}: `dblaunch ps`, `dblaunch logs -f`, `dblaunch stop`",
        child.id()
    );
    Ok(if failed { 1 } else { 0 })
}
