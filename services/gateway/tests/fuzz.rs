//! Every RPC of every service, called with requests built from linli's
//! descriptor set: empty, random values of each field's type, huge strings,
//! extreme numbers, unknown enum numbers, NUL and odd Unicode, long lists,
//! real ids harvested from earlier answers, and bodies that are not protobuf
//! at all. No answer may be INTERNAL or UNKNOWN, none may take longer than a
//! bound, and every server must still be serving at the end.
//!
//! `make test` runs a short form on both backends (LINLI_FUZZ_ROUNDS rounds per
//! RPC, default 4); `make fuzz` runs a long one. LINLI_FUZZ_SEED replays a run.
mod common;

use std::time::Duration;

use bytes::{Buf, BufMut};
use common::Suite;
use linli_core::testing::{Backend, admin_token};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The longest any one call may take.
const BOUND: Duration = Duration::from_secs(10);

/// Passes bytes through as they are, both ways.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// xorshift64*: deterministic from the seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())].clone()
    }
}

/// Ids seen in answers, to aim requests at records that exist.
#[derive(Default)]
struct Ids(Vec<String>);

impl Ids {
    /// Collects every UUID-shaped run of text in an answer.
    fn harvest(&mut self, bytes: &[u8]) {
        let is_hex = |b: u8| b.is_ascii_hexdigit() && !b.is_ascii_uppercase();
        for w in bytes.windows(36) {
            let shaped = w.iter().enumerate().all(|(i, &b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => is_hex(b),
            });
            if shaped && self.0.len() < 5000 {
                let id = String::from_utf8_lossy(w).into_owned();
                if !self.0.contains(&id) {
                    self.0.push(id);
                }
            }
        }
    }
}

fn string(rng: &mut Rng, ids: &Ids) -> String {
    if !ids.0.is_empty() && rng.chance(45) {
        return rng.pick(&ids.0);
    }
    match rng.below(16) {
        0 => String::new(),
        1 => "a".into(),
        2 => "楼道灯坏了".into(),
        3 => "x".repeat(100_000),
        4 => "\0".into(),
        5 => "a\0b".into(),
        6 => "\u{202e}abc\u{200b}".into(),
        7 => "🙂🙂".into(),
        8 => " \n\t ".into(),
        9 => "-1".into(),
        10 => "' OR 1=1 --".into(),
        11 => "%_\\".into(),
        12 => linli_core::new_id(),
        13 => "2026-13-45".into(),
        14 => "+08:00".into(),
        _ => format!("fuzz-{}", rng.next()),
    }
}

fn value(kind: &Kind, rng: &mut Rng, ids: &Ids, depth: u32) -> Value {
    match kind {
        Kind::String => Value::String(string(rng, ids)),
        Kind::Bytes => Value::Bytes(vec![0xff; rng.below(64)].into()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            let any = rng.next() as i32;
            Value::I32(rng.pick(&[0, 1, -1, 5, 100, i32::MAX, i32::MIN, any]))
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            let any = rng.next() as i64;
            Value::I64(rng.pick(&[0, 1, -1, 3500, i64::MAX, i64::MIN, any]))
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(rng.pick(&[0, 1, u32::MAX])),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(rng.pick(&[0, 1, u64::MAX])),
        Kind::Float => Value::F32(rng.pick(&[0.0, -1.5, f32::NAN, f32::INFINITY, f32::MAX])),
        Kind::Double => {
            Value::F64(rng.pick(&[0.0, 37.5, -1.0, f64::NAN, f64::NEG_INFINITY, f64::MAX]))
        }
        Kind::Bool => Value::Bool(rng.chance(50)),
        Kind::Enum(e) => {
            let mut numbers: Vec<i32> = e.values().map(|v| v.number()).collect();
            numbers.extend([999, -7]);
            Value::EnumNumber(rng.pick(&numbers))
        }
        Kind::Message(m) => Value::Message(message(m, rng, ids, depth + 1)),
    }
}

fn message(desc: &MessageDescriptor, rng: &mut Rng, ids: &Ids, depth: u32) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    if depth > 3 {
        return msg;
    }
    for field in desc.fields() {
        if field.is_map() || !rng.chance(65) {
            continue;
        }
        let kind = field.kind();
        let v = if field.is_list() {
            let n = if rng.chance(5) { 20_000 } else { rng.below(4) };
            Value::List((0..n).map(|_| value(&kind, rng, ids, depth)).collect())
        } else {
            value(&kind, rng, ids, depth)
        };
        msg.set_field(&field, v);
    }
    msg
}

/// What one call did.
enum Outcome {
    Answer(Vec<u8>),
    Refused(Status),
    Late,
}

async fn call(
    channel: &Channel,
    path: &str,
    streaming: bool,
    body: Vec<u8>,
    token: &str,
) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if grpc.ready().await.is_err() {
        return Outcome::Refused(Status::unavailable("channel not ready"));
    }
    let path: http::uri::PathAndQuery = path.parse().expect("a path");
    let req = linli_core::testing::with_token(body, token);
    let work = async {
        if streaming {
            let mut stream = grpc.server_streaming(req, path, Raw).await?.into_inner();
            // The first message, if one comes soon; a quiet stream is fine.
            match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
                Ok(Ok(m)) => Ok(m.unwrap_or_default()),
                Ok(Err(s)) => Err(s),
                Err(_) => Ok(Vec::new()),
            }
        } else {
            grpc.unary(req, path, Raw).await.map(|r| r.into_inner())
        }
    };
    match tokio::time::timeout(BOUND, work).await {
        Ok(Ok(bytes)) => Outcome::Answer(bytes),
        Ok(Err(status)) => Outcome::Refused(status),
        Err(_) => Outcome::Late,
    }
}

async fn fuzz(backend: Backend) {
    let rounds: usize = std::env::var("LINLI_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("LINLI_FUZZ_SEED")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0x5eed_1ee7);
    let s = Suite::start(backend).await;
    let pool = DescriptorPool::decode(linli_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let admin = admin_token();
    let worker = s.login("wujing").await.access_token;
    let channels = [
        ("linli.people.v1.PeopleService", s.people.channel.clone()),
        (
            "linli.issues.v1.IssuesService",
            s.issues.as_ref().unwrap().channel.clone(),
        ),
        (
            "linli.logistics.v1.LogisticsService",
            s.logistics.channel.clone(),
        ),
        ("linli.gateway.v1.GatewayService", s.channel()),
        ("linli.gateway.v1.AuthService", s.channel()),
    ];
    let mut rng = Rng(seed | 1);
    let mut ids = Ids::default();
    let mut failures = Vec::new();
    let mut calls = 0;
    // Reads first, so later rounds have real ids to aim at.
    for round in 0..rounds {
        for (service, channel) in &channels {
            let svc = pool.get_service_by_name(service).expect("the service");
            for method in svc.methods() {
                let path = format!("/{service}/{}", method.name());
                let streaming = method.is_server_streaming();
                let token = if rng.chance(50) { &admin } else { &worker };
                let (what, body) = match round {
                    0 => ("empty", Vec::new()),
                    1 => (
                        "not protobuf",
                        (0..rng.below(200) + 1).map(|_| rng.next() as u8).collect(),
                    ),
                    _ => (
                        "random",
                        message(&method.input(), &mut rng, &ids, 0).encode_to_vec(),
                    ),
                };
                calls += 1;
                match call(channel, &path, streaming, body, token).await {
                    Outcome::Answer(bytes) => ids.harvest(&bytes),
                    Outcome::Refused(status)
                        if matches!(status.code(), Code::Internal | Code::Unknown) =>
                    {
                        failures.push(format!(
                            "{path} ({what}, round {round}): {:?} {}",
                            status.code(),
                            status.message()
                        ))
                    }
                    Outcome::Refused(_) => {}
                    Outcome::Late => failures.push(format!(
                        "{path} ({what}, round {round}): no answer within {BOUND:?}"
                    )),
                }
            }
        }
    }
    // Every server is still up and serving.
    for (service, channel) in &channels {
        let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: (*service).into(),
            })
            .await
            .map(|r| r.into_inner().status);
        assert!(
            matches!(status, Ok(1)),
            "{service} after the fuzz: {status:?}"
        );
    }
    println!(
        "fuzz: {calls} calls, seed {seed}, {} ids harvested, {} failures",
        ids.0.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_survives_garbage_on_sqlite() {
    fuzz(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_survives_garbage_on_postgres() {
    fuzz(Backend::Postgres).await;
}
