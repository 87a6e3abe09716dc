//! Commit latency of the embedded store beside the disk's own floor, measured in one run on the
//! same directory: the median (and p99) of
//!
//! - a raw append of a small record and `fdatasync` (what one journal record costs at least);
//! - an embedded store commit of a batch on one hot route, and of a batch on random routes.
//!
//! Usage: `cargo run --release -p flight-counter-bench --bin commit-latency -- [DIR] [COMMITS]
//! [BATCH]`
//! (defaults: a temporary directory under the current one, 3000 commits, 16 routes a batch).
//! Prints one line per measurement and the ratios; `bench/run.sh` runs it.

use std::{
    fs::OpenOptions,
    io::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use flight_counter::{
    calendar::Day,
    clock::SystemClock,
    route::Route,
    store::{BatchStore, EmbeddedStore, RouteWrite},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let parent = args
        .next()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let commits: usize = args.next().map_or(Ok(3000), |s| s.parse())?;
    let batch: usize = args.next().map_or(Ok(16), |s| s.parse())?;
    let dir = tempfile::tempdir_in(&parent)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    let raw = raw_appends(&dir.path().join("raw-appends"), commits)?;
    report("raw append + fdatasync", &raw);

    let store = EmbeddedStore::open(&dir.path().join("store"), SystemClock::shared())?;
    let today = Day::of(std::time::SystemTime::now());
    let hot = Route::parse("AR1133")?;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random_route = move || -> anyhow::Result<Route> {
        // xorshift: routes spread over about 260,000 names, as the HTTP benchmark's.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let letter = char::from(b'A' + (seed % 26) as u8);
        Ok(Route::parse(&format!(
            "R{letter}{}",
            1 + (seed >> 8) % 9999
        ))?)
    };
    let hot_batches = (0..commits)
        .map(|_| vec![RouteWrite::keyless(hot, batch as u64, today)])
        .collect::<Vec<_>>();
    let mut random_batches = Vec::with_capacity(commits);
    for _ in 0..commits {
        let mut routes = Vec::with_capacity(batch);
        while routes.len() < batch {
            let route = random_route()?;
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        random_batches.push(
            routes
                .into_iter()
                .map(|route| RouteWrite::keyless(route, 1, today))
                .collect::<Vec<_>>(),
        );
    }
    let hot = runtime.block_on(timed_commits(&store, &hot_batches))?;
    report("store commit, one hot route", &hot);
    let random = runtime.block_on(timed_commits(&store, &random_batches))?;
    report(&format!("store commit, {batch} random routes"), &random);
    let floor = median(&raw);
    println!(
        "commit median / raw append median: hot {:.2}, random {:.2} (target <= 2.00)",
        ratio(median(&hot), floor),
        ratio(median(&random), floor)
    );
    Ok(())
}

fn raw_appends(path: &std::path::Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let record = [0x5a_u8; 400];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        times.push(started.elapsed());
    }
    Ok(times)
}

async fn timed_commits(
    store: &EmbeddedStore,
    batches: &[Vec<RouteWrite>],
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(batches.len());
    for batch in batches {
        let started = Instant::now();
        store.commit(batch).await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn median(times: &[Duration]) -> Duration {
    percentile(times, 0.5)
}

fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn report(what: &str, times: &[Duration]) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{what:<32} median {:>7.1} us   p99 {:>8.1} us   ({} samples)",
        us(median(times)),
        us(percentile(times, 0.99)),
        times.len()
    );
    let _ = std::io::stdout().flush();
}
