//! Heartbeat last-seen write throughput on SQLite: batches of 1,000 devices in one
//! transaction, against the same-run baseline of one transaction per heartbeat.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flotta_server::store::{LastSeen, SqliteStore, Store};
use time::OffsetDateTime;

const DEVICES: usize = 10_000;

fn batches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("bench.db")).expect("open store");
    let mut group = c.benchmark_group("sqlite_record_last_seen");
    for batch_size in [1usize, 1_000] {
        let mut next_device = 0usize;
        let mut tick = 0i64;
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &batch_size,
            |b, &batch_size| {
                b.iter(|| {
                    tick += 1;
                    let seen_at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(tick as u64);
                    let batch: Vec<LastSeen> = (0..batch_size)
                        .map(|_| {
                            next_device = (next_device + 1) % DEVICES;
                            LastSeen {
                                namespace: "default".into(),
                                device: format!("device-{next_device:05}"),
                                seen_at,
                            }
                        })
                        .collect();
                    runtime
                        .block_on(store.record_last_seen(&batch))
                        .expect("record batch");
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, batches);
criterion_main!(benches);
