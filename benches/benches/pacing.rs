//! Pacing decisions: `Pacer::try_take` for 10,000 senders at 1 cell/s, when a cell is free
//! (the release path) and when it is not (the answer says when the next one is). Per decision.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatcher::pacing::{Pacer, Rate, SenderKey};

const SENDERS: usize = 10_000;

fn pacing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    let senders: Vec<SenderKey> = (0..SENDERS).map(|n| Arc::from(format!("+1415555{n:04}"))).collect();
    let rate = Rate::per_second(1.0).expect("a positive rate");
    let mut group = c.benchmark_group("pacing");
    group.throughput(Throughput::Elements(SENDERS as u64));
    // A fresh pacer per sweep: every sender has a free cell.
    group.bench_function("take_free_cell_10000_senders", |b| {
        b.iter_batched(
            Pacer::new,
            |mut pacer| {
                for sender in &senders {
                    black_box(pacer.try_take(sender, rate).is_ok());
                }
                pacer
            },
            criterion::BatchSize::SmallInput,
        );
    });
    // Every sender just took its cell: each decision is a refusal with the next instant.
    let mut spent = Pacer::new();
    for sender in &senders {
        let _ = spent.try_take(sender, rate);
    }
    group.bench_function("refuse_until_next_cell_10000_senders", |b| {
        b.iter(|| {
            for sender in &senders {
                black_box(spent.try_take(sender, rate).is_err());
            }
        });
    });
    group.finish();
}

criterion_group!(benches, pacing);
criterion_main!(benches);
