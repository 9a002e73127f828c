//! Takes the write lock of a database for a moment, shows who holds it as
//! `dblaunch status --json` would, and lets go.
//!
//! ```text
//! cargo run -p dblaunch-lock --example hold -- data/app.db
//! ```
//!
//! Run two at once (or beside `dblaunch exec --write data/app.db -- …`):
//! the second waits its turn in the same queue.

use std::time::Duration;

use dblaunch_lock::{Database, Lock, occupancy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = std::env::args().nth(1).unwrap_or_else(|| {
        std::env::temp_dir()
            .join("dblaunch-example.db")
            .display()
            .to_string()
    });
    let guard = Lock::write(&db)
        .timeout(Duration::from_secs(30))
        .name("example")
        .acquire()?;
    for (path, mode) in guard.databases() {
        println!("holding {} for {mode}", path.display());
    }
    let here = Database::resolve(std::path::Path::new(&db), &std::env::current_dir()?)?;
    let report = occupancy::report(&[here]);
    println!("{}", serde_json::to_string_pretty(&report)?);
    std::thread::sleep(Duration::from_millis(200));
    guard.release();
    println!("released");
    Ok(())
}
