//! The bundled example, on a real database engine (the sqlite3 shell):
//! without dblaunch its writers collide with "database is locked"; under
//! `dblaunch run demo` nothing collides and every row is written.

use std::fs;
use std::path::Path;

use crate::*;

fn copy_example(to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::copy(root.join("dblaunch.toml.example"), to.join("dblaunch.toml")).unwrap();
    let src = root.join("examples/sqlite");
    let dst = to.join("examples/sqlite");
    fs::create_dir_all(dst.join("data")).unwrap();
    for f in [
        "ingest.sh",
        "dashboard.sh",
        "report.sh",
        "without-dblaunch.sh",
    ] {
        fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn the_demo_collides_without_dblaunch_and_not_with_it() {
    assert!(
        Command::new("sqlite3").arg("--version").output().is_ok(),
        "the demo needs the sqlite3 command line (apt-get install sqlite3)"
    );
    let env = Env::new();
    copy_example(env.dir.path());
    let o = Command::new("sh")
        .arg(env.path("examples/sqlite/without-dblaunch.sh"))
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(
        err.contains("database is locked"),
        "no collision without dblaunch?\n{err}"
    );
    assert_ne!(code(&o), 0);

    let o = env.run(&["run", "demo"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(code(&o), 0, "{out}\n{err}");
    assert!(
        !out.contains("locked") && !err.contains("database is locked"),
        "{out}\n{err}"
    );
    assert!(out.contains("report       | email: 500"), "{out}");
    assert!(out.contains("report       | post: 500"), "{out}");
    assert!(
        out.contains("ingest-post  | ingested 500 letters from post"),
        "{out}"
    );
    // And the data is all there.
    let count = Command::new("sqlite3")
        .arg(env.path("examples/sqlite/data/letters.db"))
        .arg("select count(*) from letters")
        .output()
        .unwrap();
    assert_eq!(text(&count.stdout).trim(), "1000");
}
