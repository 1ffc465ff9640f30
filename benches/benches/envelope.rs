//! Envelope encoding and parsing, on a transactional SMS and a templated marketing email:
//! serde_json into domain types (what the dispatcher runs per record) against the same parse
//! with simd-json, and the encoding producers use.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use common::Envelope;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn sms() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "message_id": "01JD7Q3M8Z8Y2V6W5T4S3R2Q1P",
        "tenant_id": "acme-corp",
        "campaign_id": "otp",
        "contact_id": "contact-829193",
        "channel": "sms",
        "to": "+14155550100",
        "priority": "transactional",
        "body": "Your Acme verification code is 482913. It expires in 10 minutes. Reply STOP to opt out.",
        "expires_at": "2026-11-24T12:10:00Z",
        "tags": {"flow": "login"}
    }))
    .expect("encodes")
}

fn email() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "message_id": "01JD7Q3M8Z8Y2V6W5T4S3R2Q1Q",
        "tenant_id": "acme-corp",
        "campaign_id": "black-friday-2026",
        "channel": "email",
        "to": "ana.lima@example.com",
        "from": "deals@acme.example",
        "priority": "marketing",
        "template": {"id": "black-friday", "variables": {"first_name": "Ana", "discount": "30%", "code": "BF30"}},
        "tags": {"segment": "vip", "region": "us-west"}
    }))
    .expect("encodes")
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope_parse");
    group.throughput(Throughput::Elements(1));
    for (name, bytes) in [("sms", sms()), ("email_template", email())] {
        group.bench_function(format!("serde_json/{name}"), |b| {
            b.iter(|| black_box(Envelope::parse(black_box(&bytes)).expect("valid")));
        });
        group.bench_function(format!("simd_json/{name}"), |b| {
            b.iter(|| black_box(Envelope::parse_with_simd_json(black_box(&bytes)).expect("valid")));
        });
        group.bench_function(format!("to_json/{name}"), |b| {
            let envelope = Envelope::parse(&bytes).expect("valid");
            b.iter(|| black_box(envelope.to_json()));
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
