//! Micro-benchmarks of the per-message hot paths:
//! decoding a client's `send`, encoding a `message`, reading a message a Redis script published
//! into its frame (once per node per message), and one broadcast to a 200-member room (encode
//! once, then one bounded-queue offer per member, as a room task does).

use chorus::{
    protocol::{ChatMessage, ServerMsg, decode_client},
    server::{
        bus::{BusEvent, payload},
        frame::encode,
        hub::Outbox,
    },
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use std::hint::black_box;

fn message(text_len: usize) -> ServerMsg {
    ServerMsg::Message(ChatMessage {
        room: "lobby".into(),
        seq: 123_456,
        epoch: "e04606e979136862".into(),
        from: "Ann".into(),
        text: "x".repeat(text_len),
        ts: 1_795_330_001_234,
        client_id: Some("k3j9-1".into()),
        edits: None,
        deleted: false,
        moderation: None,
        author: None,
    })
}

fn protocol(c: &mut Criterion) {
    let send = r#"{"type":"send","room":"lobby","text":"hello there, how is everyone today?","client_id":"k3j9-1"}"#;
    c.bench_function("decode_client/send", |b| {
        b.iter(|| decode_client(black_box(send)))
    });
    let mut group = c.benchmark_group("encode/message");
    for len in [32, 1000] {
        let msg = message(len);
        group.bench_with_input(BenchmarkId::from_parameter(len), &msg, |b, m| {
            b.iter(|| encode(black_box(m)))
        });
    }
    group.finish();
    // As append.lua publishes it: the seq and epoch it assigned, then the body Rust wrote.
    let body = payload::message_body(
        "lobby",
        "Ann",
        &"x".repeat(32),
        1_795_330_001_234,
        Some("k3j9-1"),
        chorus::protocol::Change::default(),
        Some("s:0123456789abcdef01234567"),
    );
    let published = format!("m123456 e04606e979136862 {body}");
    let room = chorus::protocol::RoomName::lobby();
    c.bench_function("bus/decode_message_32", |b| {
        b.iter(|| BusEvent::decode(&room, black_box(&published)))
    });
    // What a node did with the same message before the scripts published payloads: parse the
    // whole frame the script had glued together, and keep its bytes.
    let frame = String::from(chorus::server::frame::json(&message(32)).as_str());
    c.bench_function("bus/decode_message_32_before", |b| {
        b.iter(|| serde_json::from_str::<ServerMsg>(black_box(&frame)))
    });
}

fn broadcast(c: &mut Criterion) {
    const MEMBERS: usize = 200;
    let outboxes: Vec<_> = (0..MEMBERS).map(|_| Outbox::new(256, None)).collect();
    let msg = message(32);
    let mut group = c.benchmark_group("broadcast");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("encode_once_offer_200", |b| {
        b.iter(|| {
            let frame = encode(black_box(&msg));
            for o in &outboxes {
                o.offer(frame.clone());
            }
            // Stand in for the writers: each takes its one frame, as an otherwise idle
            // connection's writer does.
            for o in &outboxes {
                black_box(o.take().now_or_never());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, protocol, broadcast);
criterion_main!(benches);
