//! systemd's notify protocol, both ways: a run started as a `Type=notify`
//! service tells systemd READY=1 and STOPPING=1 on `$NOTIFY_SOCKET`; a
//! program with `ready = { notify = true }` gets a socket of the run's own
//! as its `$NOTIFY_SOCKET`, and is ready when READY=1 arrives there.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable that names the socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The socket systemd gave this process, if any.
pub struct Systemd {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Systemd {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
    /// namespace); `None` when it is not set.
    pub fn from_env() -> Option<Systemd> {
        let value = std::env::var_os(NOTIFY_SOCKET)?;
        let value = value.to_str()?;
        let addr = match value.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
            None if value.starts_with('/') => SocketAddr::from_pathname(value).ok()?,
            None => {
                tracing::warn!(
                    "{NOTIFY_SOCKET}={value} is neither a path nor @name; not telling systemd"
                );
                return None;
            }
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Systemd { sock, addr })
    }

    /// Sends `state` (`READY=1`, `STOPPING=1` …); a failure is logged once
    /// at debug level, as systemd may not be listening.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            tracing::debug!("cannot tell systemd {state:?}: {e}");
        }
    }
}

/// A run's socket for one program's READY=1.
pub struct ProgramSocket {
    sock: UnixDatagram,
    /// `@…`: what the program gets as `$NOTIFY_SOCKET`.
    pub name: String,
}

impl ProgramSocket {
    /// Binds `@dblaunch/PID/PROGRAM-N` in the abstract namespace: nothing to
    /// clean up on the file system, gone with the run.
    pub fn bind(program: &str, index: usize) -> io::Result<ProgramSocket> {
        let name = ProgramSocket::name_for(program, index);
        let addr = SocketAddr::from_abstract_name(&name.as_bytes()[1..])?;
        let sock = UnixDatagram::bind_addr(&addr)?;
        sock.set_nonblocking(true)?;
        Ok(ProgramSocket { sock, name })
    }

    /// The `$NOTIFY_SOCKET` of program `program`, index `index` of this run.
    pub fn name_for(program: &str, index: usize) -> String {
        format!("@dblaunch/{}/{index}-{program}", std::process::id())
    }

    /// Reads what arrived; true if a message said READY=1.
    pub fn ready_said(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut ready = false;
        while let Ok(n) = self.sock.recv(&mut buf) {
            ready |= buf[..n]
                .split(|&b| b == b'\n')
                .any(|line| line == b"READY=1");
        }
        ready
    }
}

impl AsFd for ProgramSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
