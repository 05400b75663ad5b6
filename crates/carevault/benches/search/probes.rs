//! The measurements of the search benchmark, each printing its own table.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::corpus::{self, Corpus, Rng};
use crate::server::{self, Api, Member, Server};
use crate::{BUCKETS, K, Query, percentile, recall_and_latency_cells};

/// One token per tenant, minted once per measurement (valid for an hour).
fn tokens(members: &[Member]) -> anyhow::Result<Vec<String>> {
    members.iter().map(Member::token).collect()
}

fn recall(got: &[uuid::Uuid], query: &Query) -> f64 {
    got.iter().filter(|id| query.truth.contains(id)).count() as f64 / K as f64
}

/// Recall and latency at concurrency 1, and throughput at concurrency 8, per bucket, through the
/// API.
pub async fn latency_and_recall(
    api: &Api,
    members: &[Member],
    queries: &[Vec<Query>],
    qps_seconds: u64,
) -> anyhow::Result<()> {
    let tokens = tokens(members)?;
    // The floor: an authenticated request doing one audited single-row read (token check, the
    // caller's lookup, a tenant transaction), so that search's own cost can be read off.
    let mut floor = Vec::with_capacity(200);
    for i in 0..200 {
        floor.push(api.get(&tokens[i % tokens.len()], "/tenants/current").await?);
    }
    println!(
        "\n## Search through the API (limit {K}, threshold -1)\n\nFloor, GET /tenants/current at concurrency 1: \
         p50 {:.1} ms, p95 {:.1} ms.\n",
        percentile(&mut floor, 50.0),
        percentile(&mut floor, 95.0)
    );
    println!("| tenant rows | tenants | recall@10 mean | recall@10 min | p50 ms | p95 ms | QPS at concurrency 8 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (bucket, queries) in BUCKETS.iter().zip(queries) {
        if queries.is_empty() {
            continue;
        }
        let mut latencies = Vec::with_capacity(queries.len());
        let mut recalls = Vec::with_capacity(queries.len());
        for query in queries {
            let (got, elapsed) = api.search(&tokens[query.tenant], &query.vector, K as u32).await?;
            anyhow::ensure!(got.len() == K, "a search returned {} results", got.len());
            latencies.push(elapsed);
            recalls.push(recall(&got, query));
        }
        let qps = throughput(api, &tokens, queries, Duration::from_secs(qps_seconds)).await?;
        let tenants = queries.iter().map(|q| q.tenant).collect::<std::collections::HashSet<_>>().len();
        let cells = recall_and_latency_cells(&recalls, &mut latencies);
        println!("| {} | {tenants} | {cells} | {qps:.0} |", bucket.2);
    }
    Ok(())
}

/// Searches per second with eight searches in flight, over `queries`, for `duration`.
async fn throughput(api: &Api, tokens: &[String], queries: &[Query], duration: Duration) -> anyhow::Result<f64> {
    let started = Instant::now();
    let workers = (0..8).map(|worker| async move {
        let mut done = 0u64;
        let mut next = worker;
        while started.elapsed() < duration {
            let query = &queries[next % queries.len()];
            api.search(&tokens[query.tenant], &query.vector, K as u32).await?;
            done += 1;
            next += 8;
        }
        anyhow::Ok(done)
    });
    let mut total = 0;
    for done in futures::future::join_all(workers).await {
        total += done?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `POST /documents` one at a time, into the largest tenant (which has its own index) and the
/// smallest (which does not).
pub async fn single_inserts(api: &Api, members: &[Member], corpus: &Corpus, rng: &mut Rng) -> anyhow::Result<()> {
    println!("\n## Single-document inserts (POST /documents, concurrency 1, 200 each)\n");
    println!("| tenant | rows | documents/s |");
    println!("|---|---:|---:|");
    for tenant in [0, corpus.tenants.len() - 1] {
        let token = members[tenant].token()?;
        let vectors: Vec<Vec<f32>> = (0..200).map(|_| corpus.query(rng, tenant)).collect();
        let started = Instant::now();
        for (i, vector) in vectors.iter().enumerate() {
            api.create(&token, &format!("single-{tenant}-{i}"), vector).await?;
        }
        let rate = vectors.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "| {} | {} | {rate:.0} |",
            if tenant == 0 { "largest" } else { "smallest" },
            corpus.tenants[tenant].vectors.len()
        );
    }
    Ok(())
}

/// Does another tenant's data near a point change a tenant's search latency there? Tenant A
/// (2,000–4,999 rows) and E (100–999 rows) search near X1 and near X2, two fresh directions,
/// interleaved, before and after a new tenant B loads 3,000 documents near X1.
pub async fn isolation(
    api: &Api,
    server: &Server,
    url: &str,
    corpus: &Corpus,
    members: &[Member],
    rng: &mut Rng,
    no_reconcile: bool,
) -> anyhow::Result<()> {
    let pick = |low: usize, high: usize| corpus.tenants.iter().position(|t| (low..=high).contains(&t.vectors.len()));
    let probed: Vec<usize> = [pick(2_000, 4_999), pick(100, 999)].into_iter().flatten().collect();
    let (x1, x2) = (corpus::random_unit(rng, crate::DIMS), corpus::random_unit(rng, crate::DIMS));
    let before = timings(api, url, members, &probed, &x1, &x2, rng).await?;

    let b = server::create_members(url, "Probe", 1).await?.remove(0);
    let token = b.token()?;
    for start in (0..3_000).step_by(1_000) {
        let vectors: Vec<Vec<f32>> = (0..1_000).map(|_| corpus::near(rng, &x1)).collect();
        api.batch(&token, &format!("probe-{start}"), &vectors).await?;
    }
    crate::reconcile(server, no_reconcile)?;
    let after = timings(api, url, members, &probed, &x1, &x2, rng).await?;

    println!("\n## Timing isolation (medians of 100 searches each, interleaved, after 20 unrecorded)\n");
    println!("Tenant B loads 3,000 documents near X1 between the two runs; X2 is a point nobody's data is near.\n");
    println!("| tenant rows | X1 before | X1 after | X2 after | X1 after / X2 after | X1 after / X1 before |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for tenant in probed {
        let (x1_before, x1_after, x2_after) = (before[&(tenant, 1)], after[&(tenant, 1)], after[&(tenant, 2)]);
        println!(
            "| {} | {x1_before:.2} ms | {x1_after:.2} ms | {x2_after:.2} ms | {:.2} | {:.2} |",
            corpus.tenants[tenant].vectors.len(),
            x1_after / x2_after,
            x1_after / x1_before
        );
    }
    Ok(())
}

/// Median latency (ms) of each tenant's searches near X1 (key 1) and X2 (key 2), after a VACUUM
/// ANALYZE (so that autovacuum after a load does not run during one run and not the other) and
/// 20 unrecorded searches per tenant and point.
async fn timings(
    api: &Api,
    url: &str,
    members: &[Member],
    tenants: &[usize],
    x1: &[f32],
    x2: &[f32],
    rng: &mut Rng,
) -> anyhow::Result<HashMap<(usize, u8), f64>> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("VACUUM ANALYZE documents").execute(&mut conn).await?;
    conn.close().await?;
    let mut samples: HashMap<(usize, u8), Vec<Duration>> = HashMap::new();
    for round in 0..120 {
        for &tenant in tenants {
            let token = members[tenant].token()?;
            for (key, point) in [(1u8, x1), (2, x2)] {
                let (_, elapsed) = api.search(&token, &corpus::near(rng, point), K as u32).await?;
                if round >= 20 {
                    samples.entry((tenant, key)).or_default().push(elapsed);
                }
            }
        }
    }
    Ok(samples.into_iter().map(|(key, mut durations)| (key, percentile(&mut durations, 50.0))).collect())
}

/// The per-tenant indexes at several `hnsw.ef_search` values, queried directly in SQL (as the
/// superuser, with the search's own settings and WHERE clause), for the buckets whose tenants
/// have one: the data behind the choice of `EF_SEARCH`.
pub async fn ef_sweep(url: &str, members: &[Member], queries: &[Vec<Query>]) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    println!("\n## Per-tenant indexes by ef_search (SQL directly, without the API)\n");
    println!("| ef_search | tenant rows | recall@10 mean | recall@10 min | p50 ms | p95 ms |");
    println!("|---:|---|---:|---:|---:|---:|");
    for ef in ["40", "100", "200"] {
        sqlx::query(
            "SELECT set_config('hnsw.ef_search', $1, false), set_config('plan_cache_mode', 'force_custom_plan', false), \
             set_config('enable_sort', 'off', false), set_config('hnsw.iterative_scan', 'strict_order', false)",
        )
        .bind(ef)
        .execute(&mut conn)
        .await?;
        let sql = "SELECT id FROM documents WHERE tenant_id = $1 AND deleted_at IS NULL AND embedding_vector IS NOT NULL \
                   ORDER BY embedding_vector <=> $2::vector LIMIT 10";
        sql_rows(&mut conn, ef, sql, members, queries, 1_000).await?;
    }
    conn.close().await?;
    Ok(())
}

/// pgvector's own answers, on a copy of the data with one HNSW index over every tenant (so that
/// the design's tables and plans are untouched), queried directly in SQL as the superuser: the
/// post-filter (ef_search 40) and the two iterative scans.
pub async fn baselines(url: &str, members: &[Member], queries: &[Vec<Query>]) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    for statement in [
        "DROP TABLE IF EXISTS bench_baseline",
        "CREATE TABLE bench_baseline AS SELECT id, tenant_id, embedding_vector FROM documents \
         WHERE deleted_at IS NULL AND embedding_vector IS NOT NULL",
        "SET maintenance_work_mem = '2GB'",
    ] {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    let started = Instant::now();
    sqlx::query("CREATE INDEX bench_baseline_hnsw ON bench_baseline USING hnsw (embedding_vector vector_cosine_ops)")
        .execute(&mut conn)
        .await?;
    sqlx::query("ANALYZE bench_baseline").execute(&mut conn).await?;
    println!(
        "\n## pgvector baselines (a copy of the data, one HNSW index over every tenant, built in {:.0} s; SQL \
         directly, without the API)\n",
        started.elapsed().as_secs_f64()
    );
    println!("| scan | tenant rows | recall@10 mean | recall@10 min | p50 ms | p95 ms |");
    println!("|---|---|---:|---:|---:|---:|");
    for (label, mode) in [
        ("post-filter, ef_search 40", "off"),
        ("iterative, relaxed_order", "relaxed_order"),
        ("iterative, strict_order", "strict_order"),
    ] {
        sqlx::query(
            "SELECT set_config('hnsw.ef_search', '40', false), set_config('hnsw.iterative_scan', $1, false), \
                     set_config('enable_sort', 'off', false)",
        )
        .bind(mode)
        .execute(&mut conn)
        .await?;
        let sql =
            "SELECT id FROM bench_baseline WHERE tenant_id = $1 ORDER BY embedding_vector <=> $2::vector LIMIT 10";
        sql_rows(&mut conn, label, sql, members, queries, 1).await?;
    }
    sqlx::query("DROP TABLE bench_baseline").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// One table row per bucket of at least `min_rows` tenant rows: recall@10 and latency of `sql`
/// (the tenant as $1, the query vector as $2), run directly on `conn` with its settings.
async fn sql_rows(
    conn: &mut PgConnection,
    label: &str,
    sql: &'static str,
    members: &[Member],
    queries: &[Vec<Query>],
    min_rows: usize,
) -> anyhow::Result<()> {
    for (bucket, queries) in BUCKETS.iter().zip(queries) {
        if queries.is_empty() || bucket.0 < min_rows {
            continue;
        }
        let mut latencies = Vec::with_capacity(queries.len());
        let mut recalls = Vec::with_capacity(queries.len());
        for query in queries {
            let started = Instant::now();
            let got: Vec<uuid::Uuid> = sqlx::query_scalar(sql)
                .bind(members[query.tenant].tenant.as_uuid())
                .bind(server::vector_json(&query.vector))
                .fetch_all(&mut *conn)
                .await?;
            latencies.push(started.elapsed());
            recalls.push(recall(&got, query));
        }
        let cells = recall_and_latency_cells(&recalls, &mut latencies);
        println!("| {label} | {} | {cells} |", bucket.2);
    }
    Ok(())
}
