//! The exit statuses of `exec`: the command's own (128+N for a signal),
//! 75 when a database stays busy, 126/127 when the command cannot be run,
//! 2 for usage errors, 1 for any other failure of dblaunch itself.

use crate::*;

fn exec(env: &Env, cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["exec", "--write", "app.db", "--"];
    args.extend(cmd);
    env.run(&args)
}

#[test]
fn the_commands_own_status_is_passed_through() {
    let env = Env::new();
    assert_eq!(code(&exec(&env, &["true"])), 0);
    assert_eq!(code(&exec(&env, &["false"])), 1);
    assert_eq!(code(&exec(&env, &["sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&exec(&env, &["sh", "-c", "exit 255"])), 255);
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_n() {
    let env = Env::new();
    assert_eq!(code(&exec(&env, &["sh", "-c", "kill -9 $$"])), 137);
    assert_eq!(code(&exec(&env, &["sh", "-c", "kill -TERM $$"])), 143);
}

#[test]
fn missing_and_non_executable_commands_give_127_and_126_naming_them() {
    let env = Env::new();
    let o = exec(&env, &["no-such-command-xyz"]);
    assert_eq!(code(&o), 127);
    assert!(
        text(&o.stderr).contains("`no-such-command-xyz` not found"),
        "{}",
        text(&o.stderr)
    );
    std::fs::write(env.path("script.sh"), "#!/bin/sh\ntrue\n").unwrap();
    let o = exec(&env, &["./script.sh"]);
    assert_eq!(code(&o), 126);
    assert!(
        text(&o.stderr).contains("`./script.sh` cannot be executed"),
        "{}",
        text(&o.stderr)
    );
    // Neither leaves the database locked.
    assert_eq!(
        code(&env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])),
        0
    );
}

#[test]
fn usage_errors_give_2() {
    let env = Env::new();
    let o = env.run(&["exec", "--", "true"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("at least one --read PATH or --write PATH"));
    assert_eq!(
        code(&env.run(&["exec", "--write", "a.db", "--wait", "soon", "--", "true"])),
        2
    );
    assert_eq!(
        code(&env.run(&[
            "exec",
            "--write",
            "a.db",
            "--wait",
            "1s",
            "--no-wait",
            "--",
            "true"
        ])),
        2
    );
    assert_eq!(code(&env.run(&["exec", "--write", "a.db"])), 2);
    assert_eq!(code(&env.run(&["frobnicate"])), 2);
    let o = env.run(&["exec", "--read", "a.db", "--write", "./a.db", "--", "true"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("both read and written"));
}

#[test]
fn help_and_version_succeed() {
    let env = Env::new();
    let o = env.run(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(text(&o.stdout).contains("exec"));
    assert_eq!(code(&env.run(&["--version"])), 0);
}

#[test]
fn output_is_untouched_with_one_program() {
    let env = Env::new();
    let o = exec(&env, &["sh", "-c", "printf 'a\\nb'; printf err >&2"]);
    assert_eq!(text(&o.stdout), "a\nb");
    assert!(text(&o.stderr).starts_with("err"));
}

#[test]
fn quiet_silences_dblaunch_but_not_errors() {
    let env = Env::new();
    let holder = env.spawn(&with_cmd(
        &["exec", "--write", "app.db"],
        &env.probe("h", &["--until", env.path("go").to_str().unwrap()]),
    ));
    env.wait_event("holder start", |e| e.what == "start");
    let mut waiter = env.spawn(&[
        "-q", "exec", "--wait", "200ms", "--write", "app.db", "--", "true",
    ]);
    let status = wait_status(&mut waiter);
    let err = stderr_of(&mut waiter);
    assert_eq!(status.code(), Some(75));
    assert!(!err.contains("waiting for"), "{err}");
    assert!(err.contains("is busy"), "{err}");
    touch(&env.path("go"));
    wait_output(holder);
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definitions() {
    let env = Env::new();
    let o = env.run(&["completions", "bash"]);
    assert_eq!(code(&o), 0);
    let script = env.path("dblaunch.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "the bash completion script parses");
    assert!(text(&o.stdout).contains("exec"));
    let o = env.run(&["man"]);
    assert_eq!(code(&o), 0);
    assert!(text(&o.stdout).contains(".TH dblaunch 1"));
    assert_eq!(code(&env.run(&["completions", "tcsh"])), 2);
}
