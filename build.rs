//! Two link-time measures for the cost of a launch, which is the unit of
//! dblaunch's cost (see the README's Figures).
//!
//! 1. The unwinder is linked statically on Linux with glibc. Rust's standard
//!    library asks for `-lgcc_s`, a shared library that every `dblaunch
//!    exec` would then load: one more object to open, map and relocate, and
//!    a constructor that probes the CPU with `cpuid` (a trap to the
//!    hypervisor on a virtual machine). Together that was about a tenth of a
//!    millisecond per launch. The same unwinder exists as a static archive,
//!    `libgcc_eh.a`, which GCC installs beside it; a linker script named
//!    `libgcc_s.so`, found first on the search path, points `-lgcc_s` there.
//!    Unwinding works as before (dblaunch itself aborts on panic; its tests
//!    unwind). Where the archive is missing, or the target is not linux-gnu,
//!    or the C runtime is already static, nothing changes. The C runtime is
//!    static by default (`.cargo/config.toml`), so this serves builds whose
//!    `RUSTFLAGS` replace that file's flags.
//!
//! 2. The functions a launch runs are placed together, in the order of
//!    `startup.order` (one symbol per line; written by
//!    `scripts/startup-order`). The kernel maps a program's code on demand,
//!    64 KiB around each page it faults on; a launch runs a few hundred
//!    functions spread over 3.8 MB of code, and touched 38 such windows, one
//!    page fault each. Placed together they fit in about ten. Only linkers
//!    that take `--symbol-ordering-file` (lld, Rust's default on x86-64
//!    Linux) are given the file, after a probe; symbols missing from the
//!    build (the file is for this toolchain and lock file) are skipped
//!    silently, costing the gain, never the build.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    static_unwinder();
    startup_order();
}

/// A variable cargo sets for build scripts; empty when unset.
fn var(name: &str) -> String {
    env::var(name).unwrap_or_default()
}

fn static_unwinder() {
    println!("cargo:rerun-if-env-changed=CC");
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    if var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static")
    {
        return;
    }
    // Ask the C compiler that will link (cargo's default linker is `cc`)
    // where its static unwinder is; it answers the bare name when it has none.
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let archive = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file());
    if archive.is_none() {
        println!(
            "cargo:warning=libgcc_eh.a not found by {cc}: linking the shared unwinder (libgcc_s) as usual"
        );
        return;
    }
    let dir = PathBuf::from(var("OUT_DIR")).join("static-unwinder");
    fs::create_dir_all(&dir).expect("create a directory in OUT_DIR");
    fs::write(dir.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n").expect("write the linker script");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

fn startup_order() {
    let order = PathBuf::from(var("CARGO_MANIFEST_DIR")).join("startup.order");
    println!("cargo:rerun-if-changed={}", order.display());
    if var("CARGO_CFG_TARGET_OS") != "linux" || !order.is_file() {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    if linker_takes(&args) {
        for arg in args {
            println!("cargo:rustc-link-arg-bin=dblaunch={arg}");
        }
    }
}

/// Whether the linker rustc uses for this target accepts `args`: links an
/// empty program with them, with the build's own flags.
fn linker_takes(args: &[String]) -> bool {
    let out = PathBuf::from(var("OUT_DIR")).join("link-probe");
    fs::create_dir_all(&out).expect("create a directory in OUT_DIR");
    let source = out.join("probe.rs");
    fs::write(&source, "fn main() {}\n").expect("write the probe");
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let mut probe = Command::new(rustc);
    probe
        .arg("--crate-type=bin")
        .arg("--target")
        .arg(var("TARGET"))
        .arg("-o")
        .arg(out.join("probe"))
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
    probe.output().is_ok_and(|o| o.status.success())
}
