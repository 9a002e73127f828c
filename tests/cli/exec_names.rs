//! `exec --read/--write NAME`: a bare word names an entry of the manifest's
//! `[databases]`, exactly as inside the manifest; a path has a `/` or a `.`.

use std::fs;

use crate::*;

fn project(env: &Env) {
    fs::create_dir(env.path("data")).unwrap();
    env.manifest("[databases]\nmain = \"data/main.db\"\nevents = \"data/events.db\"\n");
}

#[test]
fn a_name_locks_the_manifests_database_not_a_stray_file() {
    let env = Env::new();
    project(&env);
    let holder = env.holder(
        &["exec", "--name", "keeper", "--write", "data/main.db"],
        "h",
    );
    let o = env.run(&["exec", "--no-wait", "--write", "main", "--", "true"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 75, "{err}");
    assert!(err.contains("keeper"), "{err}");
    assert!(
        !env.path(".main.dblaunch").exists(),
        "a stray lock was made"
    );
    // From a subdirectory the manifest is found in a parent, as for `run`.
    fs::create_dir(env.path("sub")).unwrap();
    let o = env
        .cmd(&["exec", "--no-wait", "--read", "main", "--", "true"])
        .current_dir(env.path("sub"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 75, "{}", text(&o.stderr));
    touch(&env.path("go"));
    assert!(wait_output(holder).status.success());
    let o = env.run(&["exec", "--no-wait", "--write", "main", "--", "true"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
}

#[test]
fn an_unknown_name_is_a_usage_error_with_a_suggestion() {
    let env = Env::new();
    project(&env);
    let marker = env.path("ran");
    let o = env.run(&[
        "exec",
        "--write",
        "mian",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("`mian` is not a database of"), "{err}");
    assert!(err.contains("did you mean `main`?"), "{err}");
    assert!(err.contains("./mian"), "{err}");
    assert!(!marker.exists());
    assert!(!env.path(".mian.dblaunch").exists());
}

#[test]
fn a_broken_manifest_is_reported_when_a_name_needs_it() {
    let env = Env::new();
    project(&env);
    let mut text_ = fs::read_to_string(env.path("dblaunch.toml")).unwrap();
    text_.push_str("[bogus]\n");
    env.manifest(text_);
    let o = env.run(&["exec", "--write", "main", "--", "true"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("bogus"), "{err}");
    assert!(
        err.contains("dblaunch.toml:"),
        "the error is located: {err}"
    );
    assert!(!env.path(".main.dblaunch").exists());
}

#[test]
fn without_a_manifest_a_bare_word_is_refused_and_dot_slash_is_the_file() {
    let env = Env::new();
    let o = env.run(&["exec", "--write", "main", "--", "true"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("`./main`"), "{err}");
    assert!(!env.path(".main.dblaunch").exists());
    let o = env.run(&["exec", "--write", "./main", "--", "true"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(env.path(".main.dblaunch").is_dir());
}

#[test]
fn an_explicit_manifest_names_the_databases() {
    let env = Env::new();
    project(&env);
    fs::rename(env.path("dblaunch.toml"), env.path("other.toml")).unwrap();
    let holder = env.holder(&["exec", "--write", "data/events.db"], "h");
    let o = env.run(&[
        "-f",
        "other.toml",
        "exec",
        "--no-wait",
        "--read",
        "events",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 75, "{}", text(&o.stderr));
    touch(&env.path("go"));
    assert!(wait_output(holder).status.success());
}
