//! `dblaunch logs [-f] [-n N] [NAME]...`: the output of programs run with
//! `start`, from `.dblaunch/logs/NAME.log`, each line prefixed with the
//! program's name; `-f` follows new lines like `tail -f` (it looks every
//! 200 ms, and across a rotation).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::LogsArgs;
use crate::error::Error;

pub fn execute(file: Option<&Path>, args: LogsArgs) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let dir = crate::project::logs_dir(&manifest);
    let names: Vec<String> = if args.names.is_empty() {
        manifest
            .programs
            .iter()
            .map(|p| p.name.clone())
            .filter(|n| dir.join(format!("{n}.log")).exists())
            .collect()
    } else {
        let chosen = crate::project::targets_with(&manifest, &args.names, false)?;
        chosen
            .into_iter()
            .map(|i| manifest.programs[i].name.clone())
            .collect()
    };
    if names.is_empty() {
        println!(
            "no logs yet in {}: programs started with `dblaunch start` write there",
            dir.display()
        );
        return Ok(0);
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let mut followed: Vec<(String, PathBuf, u64)> = Vec::new();
    for name in &names {
        let path = dir.join(format!("{name}.log"));
        let text = fs::read(&path).unwrap_or_default();
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        for l in &lines[lines.len().saturating_sub(args.lines)..] {
            if print(&mut out, name, width, l).is_err() {
                return Ok(0);
            }
        }
        followed.push((name.clone(), path, text.len() as u64));
    }
    if !args.follow {
        return Ok(0);
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for (name, path, offset) in &mut followed {
            let Ok(mut f) = File::open(&*path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < *offset {
                *offset = 0; // rotated: a fresh file
            }
            if len == *offset {
                continue;
            }
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(*offset)).is_err() || f.read_to_end(&mut buf).is_err() {
                continue;
            }
            // Whole lines only; a partial last line waits for its end.
            let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for l in buf[..whole].split_inclusive(|b| *b == b'\n') {
                if print(&mut out, name, width, l).is_err() {
                    return Ok(0);
                }
            }
            *offset += whole as u64;
        }
    }
}

fn print(out: &mut impl Write, name: &str, width: usize, line: &[u8]) -> std::io::Result<()> {
    write!(out, "{name:<width$} | ")?;
    out.write_all(line)?;
    if line.last() != Some(&b'\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}
