//! Micro-benchmarks of the per-message hot paths:
//! decoding a client's `send`, encoding a `message`, and one broadcast to a 200-member room
//! (encode once, then one bounded-queue offer per member, as a room task does).

use axum::extract::ws::Message;
use chorus::{
    protocol::{ChatMessage, ServerMsg, decode_client},
    server::hub::{Outbox, encode},
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn message(text_len: usize) -> ServerMsg {
    ServerMsg::Message(ChatMessage {
        room: "lobby".into(),
        seq: 123_456,
        epoch: "e04606e979136862".into(),
        from: "Ann".into(),
        text: "x".repeat(text_len),
        ts: 1_795_330_001_234,
        client_id: Some("k3j9-1".into()),
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
}

fn broadcast(c: &mut Criterion) {
    const MEMBERS: usize = 200;
    let mut outboxes = Vec::with_capacity(MEMBERS);
    let mut inboxes = Vec::with_capacity(MEMBERS);
    for _ in 0..MEMBERS {
        let (tx, rx) = mpsc::channel::<Message>(256);
        outboxes.push(Outbox {
            tx,
            close: CancellationToken::new(),
        });
        inboxes.push(rx);
    }
    let msg = message(32);
    let mut group = c.benchmark_group("broadcast");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("encode_once_offer_200", |b| {
        b.iter(|| {
            let frame = encode(black_box(&msg));
            for o in &outboxes {
                o.offer(frame.clone());
            }
            // Stand in for the writers: empty the queues so they never fill.
            for rx in &mut inboxes {
                while rx.try_recv().is_ok() {}
            }
        })
    });
    group.finish();
}

criterion_group!(benches, protocol, broadcast);
criterion_main!(benches);
