//! The search benchmark (docs/PERFORMANCE.md, "Search"): a seeded corpus of tenants with Zipf
//! sizes, loaded through `POST /documents/batch` into the release server on a fresh embedded
//! cluster; its per-tenant indexes built by `carevault search reconcile`; then, per tenant-size
//! bucket, recall@10 against an exact ground truth computed here, latency at concurrency 1 and
//! throughput at concurrency 8 through the API; single-document inserts; a timing-isolation probe;
//! and pgvector's post-filter and iterative-scan baselines on a copy of the data with one global
//! HNSW index.
//!
//! ```sh
//! cargo bench -p carevault --bench search                       # 100k documents, 300 tenants
//! cargo bench -p carevault --bench search -- --docs 300000      # the larger corpus
//! cargo bench -p carevault --bench search -- --help
//! ```

mod corpus;
mod probes;
mod server;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use corpus::{Corpus, Rng, VectorKind};
use server::{Api, Member, Server};

#[derive(Debug, Parser)]
#[command(about = "The carevault search benchmark")]
struct Args {
    /// Documents in the corpus.
    #[arg(long, default_value_t = 100_000)]
    docs: usize,
    /// Tenants sharing them (Zipf sizes, exponent 1.1).
    #[arg(long, default_value_t = 300)]
    tenants: usize,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Topic-structured or uniform random vectors.
    #[arg(long, value_enum, default_value_t = Vectors::Topics)]
    vectors: Vectors,
    /// Queries per tenant-size bucket (spread over the bucket's tenants).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Seconds of the concurrency-8 run, per bucket.
    #[arg(long, default_value_t = 5)]
    qps_seconds: u64,
    /// Skip pgvector's baselines (they build a global HNSW index over the whole corpus).
    #[arg(long)]
    no_baselines: bool,
    /// Do not run `carevault search reconcile` (for a binary that predates it).
    #[arg(long)]
    no_reconcile: bool,
    /// Keep the data directory.
    #[arg(long)]
    keep: bool,
    /// Cargo passes --bench to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Vectors {
    Topics,
    Uniform,
}

const DIMS: usize = 1024;
const K: usize = 10;
const BATCH: usize = 1_000;

/// The tenant-size buckets of the report.
pub(crate) const BUCKETS: [(usize, usize, &str); 6] = [
    (1, 99, "1–99"),
    (100, 999, "100–999"),
    (1_000, 1_999, "1,000–1,999"),
    (2_000, 4_999, "2,000–4,999"),
    (5_000, 19_999, "5,000–19,999"),
    (20_000, usize::MAX, "≥ 20,000"),
];

/// One query of a bucket: whose, the vector, and the ids of its exact top-k.
pub(crate) struct Query {
    pub(crate) tenant: usize,
    pub(crate) vector: Vec<f32>,
    pub(crate) truth: HashSet<uuid::Uuid>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_carevault"));
    let kind = match args.vectors {
        Vectors::Topics => VectorKind::Topics,
        Vectors::Uniform => VectorKind::Uniform,
    };
    let mut rng = Rng::new(args.seed);
    let sizes = corpus::zipf_sizes(args.docs, args.tenants);
    let started = Instant::now();
    let corpus = Corpus::generate(&mut rng, kind, &sizes, DIMS);
    println!(
        "# {} documents x {DIMS} dimensions, {} tenants (largest {}, smallest {}), {:?} vectors, seed {}; \
         same-topic cosine {:.2}; generated in {:.1} s",
        args.docs,
        args.tenants,
        sizes[0],
        sizes[sizes.len() - 1],
        kind,
        args.seed,
        corpus::same_topic_similarity(&mut rng, DIMS),
        started.elapsed().as_secs_f64()
    );

    let server = Server::start(&bin, args.keep)?;
    let result = run(&args, &server, &corpus, &mut rng).await;
    server.stop()?;
    result
}

async fn run(args: &Args, server: &Server, corpus: &Corpus, rng: &mut Rng) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(16).build()?;
    server.ready(&http).await?;
    let url = server.superuser_url()?;
    let api = Api { http, base: server.base.clone() };
    let members = server::create_members(&url, "Bench", corpus.tenants.len()).await?;

    // Load: every tenant's documents, 1,000 per request, two requests in flight.
    let started = Instant::now();
    let ids = load(&api, &members, corpus).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    println!(
        "\n## Load\n\n{} documents through POST /documents/batch in {load_seconds:.1} s: {:.0} documents/s \
         (searchable at commit, exactly)",
        args.docs,
        args.docs as f64 / load_seconds
    );
    let ready_seconds = reconcile(server, args.no_reconcile)?;

    let queries = bucket_queries(args, corpus, &ids, rng);
    probes::latency_and_recall(&api, &members, &queries, args.qps_seconds).await?;
    // Before anything adds documents: these are judged against the same ground truth.
    if !args.no_reconcile {
        probes::ef_sweep(&url, &members, &queries).await?;
    }
    if !args.no_baselines {
        probes::baselines(&url, &members, &queries).await?;
    }
    probes::isolation(&api, server, &url, corpus, &members, rng, args.no_reconcile).await?;
    probes::single_inserts(&api, &members, corpus, rng).await?;
    println!("\nstructures ready {ready_seconds:.1} s after the load");
    Ok(())
}

/// Loads the corpus; the ids of each tenant's documents in the corpus's order.
async fn load(api: &Api, members: &[Member], corpus: &Corpus) -> anyhow::Result<Vec<Vec<uuid::Uuid>>> {
    let mut work: Vec<(usize, usize)> = Vec::new();
    for (tenant, t) in corpus.tenants.iter().enumerate() {
        for start in (0..t.vectors.len()).step_by(BATCH) {
            work.push((tenant, start));
        }
    }
    let mut ids: Vec<Vec<uuid::Uuid>> =
        corpus.tenants.iter().map(|t| vec![uuid::Uuid::nil(); t.vectors.len()]).collect();
    for pair in work.chunks(2) {
        let requests = pair.iter().map(|&(tenant, start)| async move {
            let vectors = &corpus.tenants[tenant].vectors;
            let end = (start + BATCH).min(vectors.len());
            let token = members[tenant].token()?;
            let got = api.batch(&token, &format!("t{tenant}-{start}"), &vectors[start..end]).await?;
            anyhow::Ok((tenant, start, got))
        });
        for result in futures::future::join_all(requests).await {
            let (tenant, start, got) = result?;
            ids[tenant][start..start + got.len()].copy_from_slice(&got);
        }
    }
    Ok(ids)
}

/// Runs `carevault search reconcile` and returns how long it took (0 when skipped).
fn reconcile(server: &Server, skip: bool) -> anyhow::Result<f64> {
    if skip {
        return Ok(0.0);
    }
    let started = Instant::now();
    let output = server.cli(&["search", "reconcile"]).output().context("running carevault search reconcile")?;
    anyhow::ensure!(output.status.success(), "search reconcile failed: {}", String::from_utf8_lossy(&output.stderr));
    let seconds = started.elapsed().as_secs_f64();
    let built = String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.starts_with("create")).count();
    println!("search reconcile: {built} per-tenant indexes built in {seconds:.1} s");
    Ok(seconds)
}

/// `args.queries` queries per bucket, round-robin over its tenants, with their ground truth.
fn bucket_queries(args: &Args, corpus: &Corpus, ids: &[Vec<uuid::Uuid>], rng: &mut Rng) -> Vec<Vec<Query>> {
    BUCKETS
        .iter()
        .map(|&(low, high, _)| {
            let tenants: Vec<usize> = (0..corpus.tenants.len())
                .filter(|&t| (low..=high).contains(&corpus.tenants[t].vectors.len()))
                .collect();
            if tenants.is_empty() {
                return Vec::new();
            }
            (0..args.queries)
                .map(|i| {
                    let tenant = tenants[i % tenants.len()];
                    let vector = corpus.query(rng, tenant);
                    let truth = corpus::exact_top_k(&corpus.tenants[tenant].vectors, &vector, K)
                        .into_iter()
                        .map(|index| ids[tenant][index])
                        .collect();
                    Query { tenant, vector, truth }
                })
                .collect()
        })
        .collect()
}

/// The p-th percentile (0–100) of durations, in milliseconds.
pub(crate) fn percentile(durations: &mut [Duration], p: f64) -> f64 {
    if durations.is_empty() {
        return f64::NAN;
    }
    durations.sort();
    let rank = ((p / 100.0) * (durations.len() - 1) as f64).round() as usize;
    durations[rank].as_secs_f64() * 1000.0
}

/// The table cells every recall table shares: mean and minimum recall, p50 and p95 latency (ms).
pub(crate) fn recall_and_latency_cells(recalls: &[f64], latencies: &mut [Duration]) -> String {
    let mean = recalls.iter().sum::<f64>() / recalls.len().max(1) as f64;
    let min = recalls.iter().copied().fold(f64::INFINITY, f64::min);
    format!("{mean:.3} | {min:.1} | {:.1} | {:.1}", percentile(latencies, 50.0), percentile(latencies, 95.0))
}
