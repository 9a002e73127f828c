//! An interactive command owns the terminal, as in a shell: it is the
//! terminal's foreground process group and Ctrl-C goes to it, not to dblaunch.
//! Driven through a pseudo-terminal by python3's `pty` module.

use crate::*;

const DRIVER: &str = r#"
import os, pty, sys, time, select
bin, cwd = sys.argv[1], sys.argv[2]
child = r'''
import os, signal, sys
def on_int(*_):
    print("GOT-INT", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, on_int)
fg = os.tcgetpgrp(0) == os.getpgrp()
print("FOREGROUND" if fg else "BACKGROUND", flush=True)
sys.stdin.readline()
print("NO-INT", flush=True)
'''
pid, fd = pty.fork()
if pid == 0:
    os.chdir(cwd)
    os.execv(bin, [bin, "exec", "--write", "app.db", "--", sys.executable, "-c", child])
out = b""
deadline = time.time() + 20
sent = False
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        out += data
        if b"GOT-INT" in out or b"NO-INT" in out:
            time.sleep(0.2)
    if b"FOREGROUND" in out and not sent:
        os.write(fd, b"\x03")
        sent = True
    if b"BACKGROUND" in out and not sent:
        os.write(fd, b"\n")
        sent = True
done, status = os.waitpid(pid, os.WNOHANG)
if done == 0:
    time.sleep(1)
    done, status = os.waitpid(pid, os.WNOHANG)
sys.stdout.write(out.decode(errors="replace"))
if done == 0:
    os.killpg(pid, 9)
    print("EXIT hung")
else:
    print("EXIT", os.waitstatus_to_exitcode(status))
"#;

#[test]
fn an_interactive_command_is_the_foreground_job_and_gets_ctrl_c() {
    let env = Env::new();
    let o = Command::new("python3")
        .args(["-c", DRIVER, BIN])
        .arg(env.dir.path())
        .output()
        .expect("python3");
    let out = text(&o.stdout);
    assert!(out.contains("FOREGROUND"), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("GOT-INT"), "{out}");
    assert!(
        out.contains("EXIT 0"),
        "dblaunch was not interrupted itself: {out}"
    );
}
