//! Fuzzing that runs in the test command, on stable Rust (cargo-fuzz needs a nightly compiler
//! for its sanitizers): generated input for the client frame decoder and the value parsers
//! (proptest: a failure is shrunk to a minimal case and kept in `proptest-regressions/`, which
//! later runs try first), and random and mutated WebSocket frames thrown at a real server.
//!
//! Bounded: `FUZZ_CASES` (default 256) cases per property and connections for the frame path.
//! Run longer by hand, e.g. `FUZZ_CASES=100000 cargo test --features ssr --test suite fuzz::`.

use crate::common;

use chorus::protocol::{ClientMsg, MessageText, RoomName, UserName, decode_client};
use common::{Client, TestServer};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects shaped like client frames: a known (or unknown) type and the protocol's field names
/// holding any values.
fn frame_like() -> impl Strategy<Value = String> {
    let types = prop_oneof![
        prop::sample::select(ClientMsg::TYPES.to_vec()).prop_map(str::to_owned),
        ".{0,12}",
    ];
    let field = prop::sample::select(vec![
        "room",
        "text",
        "name",
        "session",
        "since",
        "client_id",
        "epoch",
        "seq",
    ]);
    (types, prop::collection::vec((field, json_value()), 0..5)).prop_map(|(kind, fields)| {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), Value::String(kind));
        for (k, v) in fields {
            object.insert(k.into(), v);
        }
        Value::Object(object).to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_decoder_takes_any_text_without_panicking(text in ".*") {
        let _ = decode_client(&text);
    }

    #[test]
    fn the_decoder_classifies_frame_shaped_objects(json in frame_like()) {
        // A frame either decodes and encodes back to an equivalent frame, or is refused with
        // a code; it never panics.
        if let Ok(msg) = decode_client(&json) {
            let again = serde_json::to_string(&msg).expect("encodes");
            prop_assert_eq!(decode_client(&again), Ok(msg));
        }
    }

    #[test]
    fn a_name_that_is_accepted_is_already_in_its_final_form(raw in any::<String>()) {
        if let Ok(name) = UserName::parse(&raw) {
            let chars = name.as_str().chars().count();
            prop_assert!((1..=32).contains(&chars), "{} characters", chars);
            // Normalising a shown name changes nothing: what others see is what is stored.
            let again = UserName::parse(name.as_str());
            prop_assert_eq!(again.as_ref().map(UserName::as_str), Ok(name.as_str()));
            prop_assert_eq!(again.map(|n| n.key()), Ok(name.key()));
        }
    }

    #[test]
    fn rooms_and_texts_are_parsed_or_refused(raw in any::<String>(), max in 1usize..100) {
        if let Ok(room) = RoomName::parse(&raw) {
            prop_assert_eq!(RoomName::parse(room.as_str()), Ok(room.clone()));
        }
        if let Ok(text) = MessageText::parse(raw.clone(), max) {
            prop_assert!(text.as_str().chars().count() <= max);
        }
    }
}

/// A WebSocket frame as a client sends it (RFC 6455 §5.2), with every field chosen by the caller
/// so that it can be broken on purpose.
fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f)];
    let masked = u8::from(mask.is_some()) << 7;
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n <= 0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// One hostile connection's bytes after the handshake: valid frames, broken ones, mutations.
fn hostile_bytes(rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = Vec::new();
    let key = || Some(rand::random::<[u8; 4]>());
    for _ in 0..rng.gen_range(1..8) {
        let text = match rng.gen_range(0..4) {
            0 => r#"{"type":"set_name","name":"fuzz"}"#.to_owned(),
            1 => r#"{"type":"join","room":"fuzz"}"#.to_owned(),
            2 => r#"{"type":"send","room":"fuzz","text":"hi","client_id":"x"}"#.to_owned(),
            _ => (0..rng.gen_range(0..64))
                .map(|_| rng.r#gen::<char>())
                .collect(),
        };
        let mut one = match rng.gen_range(0..10) {
            // Valid text, or binary.
            0 | 1 => frame(true, 0, 1, key(), text.as_bytes()),
            2 => frame(true, 0, 2, key(), text.as_bytes()),
            // Invalid UTF-8 in a text frame.
            3 => frame(true, 0, 1, key(), &[0xff, 0xfe, 0xc3]),
            // Unmasked, reserved bits, unknown opcodes.
            4 => frame(true, 0, 1, None, text.as_bytes()),
            5 => frame(true, rng.gen_range(1..8), 1, key(), text.as_bytes()),
            6 => frame(true, 0, rng.gen_range(3..16), key(), text.as_bytes()),
            // Fragments: a start, a control frame in between (allowed), a continuation that may
            // or may not finish; or a continuation with nothing to continue.
            7 => {
                let (a, b) = text.as_bytes().split_at(text.len() / 2);
                let mut f = frame(false, 0, 1, key(), a);
                f.extend(frame(true, 0, 9, key(), b"p"));
                f.extend(frame(rng.r#gen(), 0, 0, key(), b));
                f
            }
            8 => frame(true, 0, 0, key(), text.as_bytes()),
            // A control frame too long, or a frame declaring far more bytes than it carries.
            _ => {
                if rng.r#gen() {
                    frame(true, 0, 9, key(), &[b'x'; 200])
                } else {
                    let mut f = frame(true, 0, 1, key(), b"short");
                    f[1] = 0x80 | 127;
                    f.splice(2..2, (u64::MAX >> 1).to_be_bytes());
                    f
                }
            }
        };
        // Now and then, flip a few bits anywhere.
        if !one.is_empty() && rng.gen_range(0..4) == 0 {
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..one.len());
                one[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        bytes.extend(one);
    }
    bytes
}

async fn handshake(server: &TestServer) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(server.addr).await.ok()?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(tcp)
}

#[tokio::test]
async fn the_websocket_frame_path_survives_random_and_mutated_frames() {
    // A panic anywhere in the server (a connection's task included) is counted.
    let panics = Arc::new(AtomicUsize::new(0));
    let previous = std::panic::take_hook();
    std::panic::set_hook({
        let panics = panics.clone();
        Box::new(move |info| {
            panics.fetch_add(1, Ordering::SeqCst);
            previous(info);
        })
    });
    let server = TestServer::with(|c| {
        c.conn.max_frame_bytes = 64 * 1024;
        // Every fuzz connection comes from one address.
        c.limits.connects_per_sec = 0;
    })
    .await;
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut opened = 0;
    for _ in 0..cases() {
        let Some(mut tcp) = handshake(&server).await else {
            continue;
        };
        opened += 1;
        let _ = tcp.write_all(&hostile_bytes(&mut rng)).await;
        // Whatever the server answers (errors, a close), it answers quickly or not at all.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut sink)).await;
    }
    assert!(opened > 0, "no fuzz connection was opened");
    // The server still serves people.
    let (mut ann, _, _) = Client::in_room(&server, "ann", "after").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "after").await;
    ann.say("after", "still here", "c1").await;
    assert_eq!(bo.next_message().await.text, "still here");
    server.shutdown().await.expect("clean shutdown");
    assert_eq!(
        panics.load(Ordering::SeqCst),
        0,
        "the server panicked (seed {seed})"
    );
}
