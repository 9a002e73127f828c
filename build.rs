//! Links the unwinder statically on Linux with glibc.
//!
//! Rust's standard library asks for `-lgcc_s`, a shared library that every
//! `dblaunch exec` would then load: one more object to open, map and
//! relocate, and a constructor that probes the CPU with `cpuid` (a trap to
//! the hypervisor on a virtual machine). Together that was about a tenth of
//! a millisecond per launch, and a launch is the unit of dblaunch's cost (see
//! the README's Figures). The same unwinder exists as a static archive,
//! `libgcc_eh.a`, which GCC installs beside it; a linker script named
//! `libgcc_s.so`, found first on the search path, points `-lgcc_s` there.
//! Unwinding works as before (dblaunch itself aborts on panic; its tests
//! unwind).
//!
//! Where the archive is missing, or the target is not linux-gnu, or the C
//! runtime is already static, nothing changes.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |name: &str| env::var(name).unwrap_or_default();
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
