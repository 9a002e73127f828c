//! How the `dblaunch` executable is linked. Every `dblaunch exec` is a
//! process start, and start-up is part of what a lock costs; these are the
//! link-time measures, each with its measured reason in `docs/design.md`
//! ("Start-up cost"). They apply to the `dblaunch` executable alone
//! (`cargo:rustc-link-arg-bin`): the test and benchmark harnesses, build
//! scripts, and the shared libraries of the workspace (the Python and Node
//! modules are position-independent and dynamically linked, as a shared
//! library must be) are linked as usual.
//!
//! 1. A static, position-dependent executable (Linux with glibc). No dynamic
//!    loader runs at each start: linked against libc.so, ld.so was about
//!    230,000 of a launch's 500,000 instructions. And no relative
//!    relocations are applied at each start, which a position-independent
//!    executable has in thousands. The code is compiled as usual
//!    (position-independent), which a position-dependent executable links
//!    as it is. rustc asks for the C runtime and the unwinder by name
//!    (`-lc`, `-lgcc_s` …); linker scripts of those names, found first on
//!    the search path, point each to its static archive, and `-static
//!    -no-pie` selects the matching start files. Where an archive is
//!    missing (libc6-dev not installed), the executable is linked
//!    dynamically as usual, with a warning, and only the unwinder is made
//!    static if its archive exists.
//!
//! 2. The functions a launch runs are placed together, in the order of
//!    `scripts/startup.order` (one symbol per line; written by
//!    `scripts/startup-order`). The kernel maps a program's code on demand,
//!    64 KiB around each page it faults on; a launch runs a few hundred
//!    functions spread over megabytes of code, and touched 38 such windows,
//!    one page fault each; placed together they fit in about ten. Only
//!    linkers that take `--symbol-ordering-file` (lld, Rust's default on
//!    x86-64 Linux) are given the file, after a probe; symbols missing from
//!    the build (the file is for one toolchain and lock file) are skipped
//!    silently, costing the gain, never the build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = "dblaunch";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    if var("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    if var("CARGO_CFG_TARGET_ENV") == "gnu" {
        static_executable();
    }
    startup_order();
}

/// A variable cargo sets for build scripts; empty when unset.
fn var(name: &str) -> String {
    env::var(name).unwrap_or_default()
}

/// Where the C compiler that links (cargo's default linker is `cc`) keeps
/// the static archive `lib{name}.a`; `None` when it has none (it then
/// answers the bare name).
fn archive(name: &str) -> Option<PathBuf> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    Command::new(cc)
        .arg(format!("-print-file-name=lib{name}.a"))
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file())
}

fn static_executable() {
    // RUSTFLAGS that already ask for a static C runtime do it rustc's way.
    if var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static")
    {
        return;
    }
    let dir = PathBuf::from(var("OUT_DIR")).join("static-link");
    fs::create_dir_all(&dir).expect("create a directory in OUT_DIR");
    let script = |name: &str, text: String| {
        fs::write(dir.join(format!("lib{name}.so")), text).expect("write a linker script");
    };
    let (Some(gcc), Some(gcc_eh)) = (archive("gcc"), archive("gcc_eh")) else {
        println!(
            "cargo:warning=libgcc_eh.a not found: dblaunch is linked dynamically, as usual, and each launch pays for the dynamic loader"
        );
        return;
    };
    script("gcc_s", format!("INPUT({})\n", gcc_eh.display()));
    let search = format!("-L{}", dir.display());
    let libc = archive("c");
    let others: Option<Vec<(&str, PathBuf)>> = ["m", "dl", "pthread", "rt", "util"]
        .into_iter()
        .map(|n| archive(n).map(|a| (n, a)))
        .collect();
    let (Some(libc), Some(others)) = (libc, others) else {
        println!(
            "cargo:warning=glibc's static libraries (libc.a, from libc6-dev) not found: dblaunch is linked dynamically, and each launch pays for the dynamic loader (about 1.2x the CPU of a static launch)"
        );
        // The unwinder alone is still worth linking statically: libgcc_s is
        // one more shared object to load at each start.
        println!("cargo:rustc-link-arg-bin={BIN}={search}");
        return;
    };
    script(
        "c",
        format!(
            "GROUP({} {} {})\n",
            libc.display(),
            gcc.display(),
            gcc_eh.display()
        ),
    );
    for (name, path) in &others {
        script(name, format!("INPUT({})\n", path.display()));
    }
    let args = [search, "-no-pie".to_owned(), "-static".to_owned()];
    if links_and_runs(&args) {
        for arg in args {
            println!("cargo:rustc-link-arg-bin={BIN}={arg}");
        }
    } else {
        println!(
            "cargo:warning=the linker cannot link dblaunch statically here: it is linked dynamically, as usual"
        );
    }
}

fn startup_order() {
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("scripts/startup.order");
    println!("cargo:rerun-if-changed={}", order.display());
    if !order.is_file() {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    if links_and_runs(&args) {
        for arg in args {
            println!("cargo:rustc-link-arg-bin={BIN}={arg}");
        }
    }
}

/// Whether the linker rustc uses for this target links a small program
/// with `args`, with the build's own flags, and (when the target is this
/// machine) the program runs.
fn links_and_runs(args: &[String]) -> bool {
    let out = PathBuf::from(var("OUT_DIR")).join("link-probe");
    fs::create_dir_all(&out).expect("create a directory in OUT_DIR");
    let source = out.join("probe.rs");
    fs::write(
        &source,
        "fn main() { std::thread::spawn(|| ()).join().unwrap(); }\n",
    )
    .expect("write the probe");
    let program = out.join("probe");
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let mut probe = Command::new(rustc);
    probe
        .arg("--crate-type=bin")
        .arg("--target")
        .arg(var("TARGET"))
        .arg("-o")
        .arg(&program)
        .arg(&source);
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    probe.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    // A linker configured for the target (target.<triple>.linker) reaches
    // rustc as -C linker, not in the flags: cargo tells build scripts.
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        probe.arg("-C").arg(format!("linker={linker}"));
    }
    for arg in args {
        probe.arg("-C").arg(format!("link-arg={arg}"));
    }
    if !probe.output().is_ok_and(|o| o.status.success()) {
        return false;
    }
    var("TARGET") != var("HOST") || Command::new(&program).status().is_ok_and(|s| s.success())
}
