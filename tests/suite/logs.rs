//! The `chorus` binary's JSON logs: one object a line, with the connection's span.

use crate::common;

use common::{Client, Endpoint, PATIENCE, free_port, terminate, wait_ready};
use std::process::{Command, Stdio};

/// A node started by the test, on a loopback port.
struct Local(u16);

impl Endpoint for Local {
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.0)
    }
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_carrying_the_connection_s_span() {
    let port = free_port();
    let path = std::env::temp_dir().join(format!("chorus-json-logs-{port}.log"));
    let out = std::fs::File::create(&path).expect("a log file");
    let mut node = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", "node-logs", "--drain-ms", "0"])
        .args(["--log-format", "json", "--log", "info,chorus=debug"])
        .env("CHORUS_CONFIG", "/dev/null")
        .env_remove("RUST_LOG")
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("the chorus binary starts");
    wait_ready(port);
    let mut ann = Client::named(&Local(port), "ann").await;
    let session = ann.session.clone();
    ann.send_raw("not json").await;
    assert_eq!(ann.next_error().await, "invalid_json");
    ann.close().await;
    let exit = terminate(&mut node, PATIENCE).expect("the node stops");
    assert!(exit.success(), "{exit}");

    let text = std::fs::read_to_string(&path).expect("the log");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{text}");
    // The refusal is logged inside ann's connection: node, connection id and name.
    let refused = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request refused")
        .unwrap_or_else(|| panic!("no refusal logged: {text}"));
    assert_eq!(refused["fields"]["code"], "invalid_json");
    let span = &refused["span"];
    assert_eq!(span["name"], "conn");
    assert_eq!(span["node"], "node-logs");
    assert_eq!(span["user"], "ann");
    assert!(
        span["conn"].as_str().is_some_and(|c| c.len() == 32),
        "{span}"
    );
    // One access line per HTTP request, the upgrade included.
    let answered = |path: &str, status: u64| {
        lines.iter().any(|l| {
            l["span"]["name"] == "http"
                && l["span"]["path"] == path
                && l["fields"]["status"] == status
        })
    };
    assert!(answered("/readyz", 200), "{text}");
    assert!(answered("/ws", 101), "{text}");
    // A session is a bearer secret: never logged.
    assert!(!text.contains(&session), "the session was logged");
}
