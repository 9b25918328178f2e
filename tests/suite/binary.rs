//! The `chorus` binary as an operator runs it: configuration errors and signals.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common;

use common::{free_port, terminate, wait_listening};

const BIN: &str = env!("CARGO_BIN_EXE_chorus");

/// Runs the binary, expecting it to refuse to start (exit 2) with a message naming `key`.
fn assert_refused(cmd: &mut Command, key: &str) {
    let out = cmd.output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains(key), "message does not name {key}: {text}");
}

#[test]
fn a_bad_setting_is_refused_at_start_up_with_a_message_naming_it() {
    assert_refused(
        Command::new(BIN)
            .args(["--max-frame-bytes", "10"])
            .env("CHORUS_CONFIG", "/dev/null"),
        "max_frame_bytes",
    );
}

#[test]
fn a_config_file_with_an_unknown_key_is_refused() {
    let dir = std::env::temp_dir().join(format!("chorus-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "histroy_size = 5\n").expect("write config");
    assert_refused(Command::new(BIN).arg("--config").arg(&file), "histroy_size");
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("CHORUS_CONFIG", "/dev/null")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    wait_listening(port);
    let exit = terminate(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let mut logs = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut logs);
    }
    assert!(logs.contains("draining"), "no drain log: {logs}");
}
