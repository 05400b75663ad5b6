//! What the form of the tenant predicate costs on an exact scan, side by side in one run.
//!
//! `cargo bench -p carevault-db --bench tenant_function [-- ROUNDS]` creates a scratch database on
//! the test cluster, five copies of a small `documents`-like table (two tenants of 2,000 rows each,
//! 1024-dimension embeddings), each under forced row-level security with one form of the policy,
//! and times, as `carevault_app` in a tenant transaction:
//!
//! * `search`: the exact scan of similarity search (`WHERE tenant_id = $1 ORDER BY embedding <=>
//!   $2 LIMIT 10`; the policy's predicate is checked on every candidate row);
//! * `count`: `SELECT count(*)` with no filter of its own (the policy is the only filter, on a
//!   sequential scan of both tenants' rows: where a per-row function call costs the most).
//!
//! The forms: `inline` (migration 9: the setting read in a sub-select, the baseline), `subselect`
//! (migration 15: `(SELECT carevault_current_tenant())`, what the policies use), `bare`
//! (`carevault_current_tenant()` without a sub-select, as Citus requires; inlined by the planner),
//! `plpgsql` (a PL/pgSQL function without a sub-select: not inlinable, one call per row, the shape
//! a verifying function would have) and `no_rls` (row-level security disabled, the floor).
//!
//! Rounds interleave the forms in a rotating order, so drift of this noisy machine hits all forms
//! alike; each figure is the median over rounds, and ratios are against `inline` in the same run.

use std::time::{Duration, Instant};

use carevault_testdb::TestDb;
use sqlx::{Connection, PgConnection};

const ROWS_PER_TENANT: i64 = 2_000;
const QUERIES_PER_ROUND: usize = 30;
const TENANT: &str = "11111111-1111-4111-8111-111111111111";
const OTHER: &str = "22222222-2222-4222-8222-222222222222";

/// (name, policy expression).
const FORMS: [(&str, Option<&str>); 5] = [
    ("inline", Some("tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid)")),
    ("subselect", Some("tenant_id = (SELECT carevault_current_tenant())")),
    ("bare", Some("tenant_id = carevault_current_tenant()")),
    ("plpgsql", Some("tenant_id = bench_current_tenant_plpgsql()")),
    ("no_rls", None),
];

const QUERIES: [(&str, &str); 2] = [
    ("search", "SELECT id FROM {table} WHERE tenant_id = $1::uuid ORDER BY embedding <=> $2::vector LIMIT 10"),
    ("count", "SELECT count(*) FROM {table} WHERE $1::uuid IS NOT NULL AND $2::vector IS NOT NULL"),
];

async fn setup(owner: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE FUNCTION bench_current_tenant_plpgsql() RETURNS uuid LANGUAGE plpgsql STABLE AS \
         $$ BEGIN RETURN nullif(current_setting('app.current_tenant_id', true), '')::uuid; END $$; \
         GRANT EXECUTE ON FUNCTION bench_current_tenant_plpgsql() TO carevault_app; \
         GRANT EXECUTE ON FUNCTION carevault_current_tenant() TO carevault_app; \
         SELECT setseed(0.42);",
    )
    .execute(&mut *owner)
    .await?;
    for (name, policy) in FORMS {
        let table = format!("bench_{name}");
        let mut sql = format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, embedding vector(1024)); \
             CREATE INDEX ON {table} (tenant_id); GRANT SELECT ON {table} TO carevault_app; \
             INSERT INTO {table} (tenant_id, embedding) \
                 SELECT CASE WHEN g % 2 = 0 THEN '{TENANT}'::uuid ELSE '{OTHER}'::uuid END, \
                        (SELECT array_agg(random()::real - 0.5) FROM generate_series(1, 1024) WHERE g > 0)::vector \
                 FROM generate_series(1, {}) AS g; \
             ANALYZE {table};",
            2 * ROWS_PER_TENANT
        );
        if let Some(policy) = policy {
            sql.push_str(&format!(
                "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY; ALTER TABLE {table} FORCE ROW LEVEL SECURITY; \
                 CREATE POLICY isolation ON {table} FOR SELECT TO carevault_app USING ({policy});"
            ));
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *owner).await?;
    }
    Ok(())
}

/// Runs `query` on `table` [`QUERIES_PER_ROUND`] times in one tenant transaction; the elapsed time
/// per query.
async fn time(app: &mut PgConnection, query: &str, table: &str, probe: &str) -> Result<Duration, sqlx::Error> {
    let sql = query.replace("{table}", table);
    let mut tx = app.begin().await?;
    sqlx::query("SELECT set_config('role', 'carevault_app', true), set_config('app.current_tenant_id', $1, true)")
        .bind(TENANT)
        .execute(&mut *tx)
        .await?;
    let started = Instant::now();
    for _ in 0..QUERIES_PER_ROUND {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(TENANT).bind(probe).execute(&mut *tx).await?;
    }
    let elapsed = started.elapsed() / QUERIES_PER_ROUND as u32;
    tx.rollback().await?;
    Ok(elapsed)
}

/// The plan of `query` on `table` as the tenant, on one line.
async fn plan(app: &mut PgConnection, query: &str, table: &str, probe: &str) -> Result<String, sqlx::Error> {
    let sql = format!("EXPLAIN (COSTS OFF) {}", query.replace("{table}", table));
    let mut tx = app.begin().await?;
    sqlx::query("SELECT set_config('role', 'carevault_app', true), set_config('app.current_tenant_id', $1, true)")
        .bind(TENANT)
        .execute(&mut *tx)
        .await?;
    let lines: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(TENANT).bind(probe).fetch_all(&mut *tx).await?;
    tx.rollback().await?;
    // Node names and conditions only: the probe vector's literal is 1,024 numbers long.
    let shorten = |line: &str| {
        if line.len() > 90 { format!("{}…", &line[..line.floor_char_boundary(90)]) } else { line.to_string() }
    };
    Ok(lines.iter().map(|l| shorten(l.trim())).collect::<Vec<_>>().join(" / "))
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().skip(1).find(|a| !a.starts_with('-')).map_or(Ok(25), |a| a.parse())?;
    let db = TestDb::new().await;
    let mut owner = PgConnection::connect(&db.owner_url()).await?;
    setup(&mut owner).await?;
    let mut app = PgConnection::connect(&db.app_url()).await?;
    let probe = format!(
        "[{}]",
        (0..1024).map(|i| format!("{}", ((i * 37) % 101) as f32 / 101.0 - 0.5)).collect::<Vec<_>>().join(",")
    );

    // Correctness first: every form shows exactly the tenant's rows.
    for (name, _) in FORMS {
        let mut tx = app.begin().await?;
        sqlx::query("SELECT set_config('role', 'carevault_app', true), set_config('app.current_tenant_id', $1, true)")
            .bind(TENANT)
            .execute(&mut *tx)
            .await?;
        let filter = if name == "no_rls" { format!(" WHERE tenant_id = '{TENANT}'") } else { String::new() };
        let seen: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM bench_{name}{filter}")))
            .fetch_one(&mut *tx)
            .await?;
        assert_eq!(seen, ROWS_PER_TENANT, "{name}");
        tx.rollback().await?;
    }

    println!(
        "tenant predicate forms: {ROWS_PER_TENANT} rows per tenant, 2 tenants, {rounds} rounds x {QUERIES_PER_ROUND} queries"
    );
    for (query_name, query) in QUERIES {
        for (name, _) in FORMS {
            println!(
                "plan {query_name:<7} {name:<10} {}",
                plan(&mut app, query, &format!("bench_{name}"), &probe).await?
            );
        }
    }
    for (query_name, query) in QUERIES {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); FORMS.len()];
        // One warm-up pass, not counted.
        for (name, _) in FORMS {
            time(&mut app, query, &format!("bench_{name}"), &probe).await?;
        }
        for round in 0..rounds {
            for offset in 0..FORMS.len() {
                let index = (round + offset) % FORMS.len();
                let table = format!("bench_{}", FORMS[index].0);
                samples[index].push(time(&mut app, query, &table, &probe).await?);
            }
        }
        let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
        let baseline = medians[0].as_secs_f64();
        for ((name, _), value) in FORMS.iter().zip(&medians) {
            println!(
                "{query_name:<7} {name:<10} median {:>8.3} ms   ratio to inline {:.2}",
                value.as_secs_f64() * 1e3,
                value.as_secs_f64() / baseline
            );
        }
    }
    Ok(())
}
