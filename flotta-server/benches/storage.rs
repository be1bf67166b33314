//! Heartbeat last-seen write throughput on SQLite: batches of 1,000 devices in one
//! transaction, against the same-run baseline of one transaction per heartbeat.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flotta_server::store::{LastSeen, LastSeenRecorder, SqliteStore, Store};
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
        let mut tick = 0u64;
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &batch_size,
            |b, &batch_size| {
                b.iter(|| {
                    tick += 1;
                    let seen_at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(tick);
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

    // 1,000 concurrent heartbeats through the group-commit recorder.
    let store: Arc<dyn Store> = Arc::new(store);
    let recorder = runtime.block_on(async { LastSeenRecorder::start(Arc::clone(&store), 1_000) });
    let mut group = c.benchmark_group("sqlite_last_seen_recorder");
    let concurrent = 1_000usize;
    let mut tick = 1_000_000u64;
    group.throughput(Throughput::Elements(concurrent as u64));
    group.bench_function(BenchmarkId::from_parameter(concurrent), |b| {
        b.iter(|| {
            tick += 1;
            let seen_at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(tick);
            runtime.block_on(async {
                let waits: Vec<_> = (0..concurrent)
                    .map(|i| {
                        let recorder = recorder.clone();
                        tokio::spawn(async move {
                            recorder
                                .record(LastSeen {
                                    namespace: "default".into(),
                                    device: format!("device-{i:05}"),
                                    seen_at,
                                })
                                .await
                        })
                    })
                    .collect();
                for w in waits {
                    w.await.expect("task").expect("recorded");
                }
            });
        });
    });
    group.finish();
}

criterion_group!(benches, batches);
criterion_main!(benches);
