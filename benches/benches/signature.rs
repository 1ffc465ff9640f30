//! Webhook signature verification: X-Twilio-Signature (HMAC-SHA1 over the URL and the sorted
//! form parameters) of a realistic status callback, verified and computed. Per callback.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use common::twilio::signature::{compute, verify};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TOKEN: &str = "12345678901234567890123456789012";
const URL: &str = "https://dispatch.example.com/webhooks/twilio/status";

fn callback() -> Vec<(String, String)> {
    [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+14155550150"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", "delivered"),
        ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"),
        ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
        ("SmsStatus", "delivered"),
        ("To", "+14155550100"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

fn signature(c: &mut Criterion) {
    let params = callback();
    let signed = compute(TOKEN, URL, &params);
    let mut group = c.benchmark_group("twilio_signature");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_status_callback", |b| {
        b.iter(|| {
            assert!(verify(
                black_box(TOKEN),
                black_box(URL),
                black_box(&params),
                black_box(&signed)
            ))
        });
    });
    group.bench_function("compute_status_callback", |b| {
        b.iter(|| black_box(compute(black_box(TOKEN), black_box(URL), black_box(&params))));
    });
    group.finish();
}

criterion_group!(benches, signature);
criterion_main!(benches);
