//! Similarity search on 2,050 embedded rows where one tenant holds 50, in each tier of the
//! design (`carevault_db::search_index`): exactly min(limit, eligible rows), threshold honoured,
//! deleted rows skipped, ordered by distance; the exact tier equal to an exact scan computed
//! independently in Rust; a large tenant searched exactly until its own index is built, then
//! through that index (recall@10 at least 0.9 per query here) on every execution of the prepared
//! statement (the plan is checked by the index's scan counter).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use carevault_db::repo::{SearchHit, SearchLimit, Threshold};
use carevault_db::search_index::{self, IndexChange, IndexPolicy, ReconcileOutcome};
use carevault_db::{AppPool, DocumentId, Embedding, PlatformPool, TenantId, TenantTx, UserId, UserRole};
use carevault_testdb::TestDb;
use sqlx::{Acquire, PgPool};

use crate::fixtures::{app_session, tenant, user};

const SMALL_ROWS: i64 = 50;
/// Enough for the big tenant to pass the default threshold (1,000 rows) twice over.
const TOTAL_ROWS: i64 = 2_050;

struct Fixture {
    db: TestDb,
    pool: AppPool,
    platform: PlatformPool,
    owner: PgPool,
    small: TenantId,
    big: TenantId,
    centers: Vec<Embedding>,
}

/// 10 cluster centres; each row is its centre plus noise, so a centre query has high-similarity
/// neighbours (≈0.8) and a clear gap to the rest (≈0). `total_rows` in all, [`SMALL_ROWS`] of
/// them the small tenant's. No tenant has its index yet.
async fn fixture(total_rows: i64) -> Fixture {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let small = tenant(&platform, "Small").await;
    let big = tenant(&platform, "Big").await;
    let small_user = user(&pool, small, "s@s.test", UserRole::Member).await;
    let big_user = user(&pool, big, "b@b.test", UserRole::Member).await;

    // Fixture loading only: the owner bypasses nothing that is checked below.
    let owner = db.owner_pool().await;
    let mut conn = owner.acquire().await.unwrap();
    let conn = conn.acquire().await.unwrap();
    for statement in [
        "SELECT setseed(0.42)",
        "CREATE TEMP TABLE centers AS SELECT k, array_agg((random() - 0.5)::real ORDER BY i) AS v \
         FROM generate_series(0, 9) AS k, generate_series(1, 1024) AS i GROUP BY k",
    ] {
        sqlx::query(statement).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename, status, embedding_vector) \
         SELECT CASE WHEN g <= $5 THEN $1 ELSE $2 END, CASE WHEN g <= $5 THEN $3 ELSE $4 END, \
                'k/' || g, 'bucket', 'doc-' || g || '.pdf', 'completed', \
                (SELECT array_agg((c.v[i] + (random() - 0.5) * 0.7)::real ORDER BY i) FROM generate_series(1, 1024) AS i)::vector \
         FROM generate_series(1, $6) AS g JOIN centers AS c ON c.k = g % 10",
    )
    .bind(small)
    .bind(big)
    .bind(small_user.id)
    .bind(big_user.id)
    .bind(SMALL_ROWS)
    .bind(total_rows)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE documents").execute(&mut *conn).await.unwrap();
    let centers: Vec<Vec<f32>> =
        sqlx::query_scalar("SELECT v FROM centers ORDER BY k").fetch_all(&mut *conn).await.unwrap();
    let centers = centers.into_iter().map(|c| Embedding::parse(c).unwrap()).collect();
    Fixture { db, pool, platform, owner: owner.clone(), small, big, centers }
}

impl Fixture {
    async fn reconcile(&self, policy: IndexPolicy) -> Vec<IndexChange> {
        let started = Instant::now();
        let outcome = search_index::reconcile(&self.owner, &self.pool, &self.platform, policy).await.unwrap();
        eprintln!("reconcile: {:?}", started.elapsed());
        match outcome {
            ReconcileOutcome::Done { applied, failed } => {
                assert_eq!(failed, [], "no change fails here");
                applied
            }
            ReconcileOutcome::Busy => panic!("no other reconciler runs in this test"),
        }
    }

    /// How many scans the tenant's index has served, as the statistics system reports them. A
    /// backend reports its counters when it goes idle, at most once a second, so this waits
    /// until they reach `at_least` (or 20 s pass) and returns what it last read.
    async fn index_scans(&self, tenant: TenantId, at_least: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let scans: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes WHERE indexrelname = $1",
            )
            .bind(search_index::index_name(tenant))
            .fetch_one(&self.owner)
            .await
            .unwrap();
            if scans >= at_least || Instant::now() > deadline {
                return scans;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn search(f: &Fixture, tenant: TenantId, query: &Embedding, limit: u32, threshold: f64) -> Vec<SearchHit> {
    let mut tx = TenantTx::begin(&f.pool, tenant, Default::default()).await.unwrap();
    let hits = tx
        .documents()
        .similarity_search(query, SearchLimit::parse(limit).unwrap(), Threshold::parse(threshold).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    hits
}

/// The tenant's rows and their exact cosine distances to `query`, nearest first, computed in
/// Rust from the stored vectors (read as the runtime role).
async fn exact(f: &Fixture, tenant: TenantId, query: &Embedding) -> Vec<(DocumentId, f64)> {
    let mut conn = app_session(&f.db, Some(tenant)).await;
    let rows: Vec<(DocumentId, pgvector::Vector)> = sqlx::query_as(
        "SELECT id, embedding_vector FROM documents WHERE deleted_at IS NULL AND embedding_vector IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let q = query.as_slice();
    let mut distances: Vec<(DocumentId, f64)> =
        rows.into_iter().map(|(id, v)| (id, true_distance(q, v.as_slice()))).collect();
    distances.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    distances
}

fn ids(hits: &[SearchHit]) -> Vec<DocumentId> {
    hits.iter().map(|h| h.id).collect()
}

fn assert_ordered(hits: &[SearchHit]) {
    assert!(
        hits.windows(2).all(|w| (w[0].distance, w[0].id) <= (w[1].distance, w[1].id)),
        "not ordered by distance, then id"
    );
    assert!(hits.iter().all(|h| (h.similarity - (1.0 - h.distance)).abs() < 1e-9));
}

/// The hits are exactly the exact top-k, in order, with the right distances.
fn assert_exact(hits: &[SearchHit], expected: &[(DocumentId, f64)], limit: usize) {
    assert_eq!(hits.len(), limit.min(expected.len()));
    assert_eq!(ids(hits), expected.iter().take(hits.len()).map(|e| e.0).collect::<Vec<_>>());
    for (hit, (_, distance)) in hits.iter().zip(expected) {
        assert!((hit.distance - distance).abs() < 1e-4, "{} vs {distance}", hit.distance);
    }
    assert_ordered(hits);
}

#[tokio::test]
async fn similarity_search_is_complete_ordered_and_tenant_scoped_in_every_tier() {
    let f = fixture(TOTAL_ROWS).await;
    let small_rows = exact(&f, f.small, &f.centers[0]).await;
    let small_ids: BTreeSet<DocumentId> = small_rows.iter().map(|r| r.0).collect();
    assert_eq!(small_ids.len(), SMALL_ROWS as usize);
    let big_ids: BTreeSet<DocumentId> = exact(&f, f.big, &f.centers[0]).await.iter().map(|r| r.0).collect();
    assert_eq!(big_ids.len(), (TOTAL_ROWS - SMALL_ROWS) as usize);

    // The small tenant (exact tier): min(limit, eligible) rows, exactly the exact top-k, in order.
    for (query, limit) in [(&f.centers[3], 10u32), (&f.centers[7], 1), (&f.centers[0], 100)] {
        let hits = search(&f, f.small, query, limit, -1.0).await;
        assert_exact(&hits, &exact(&f, f.small, query).await, limit as usize);
    }

    // The threshold: exactly the rows at or above it.
    let query = &f.centers[3];
    let hits = search(&f, f.small, query, 100, 0.7).await;
    let expected: Vec<DocumentId> =
        exact(&f, f.small, query).await.iter().filter(|e| 1.0 - e.1 >= 0.7).map(|e| e.0).collect();
    assert!(!expected.is_empty() && expected.len() < small_ids.len(), "the fixture separates clusters");
    assert_eq!(ids(&hits), expected);
    assert!(hits.iter().all(|h| h.similarity >= 0.7));

    // Deleted rows are skipped.
    let deleted: Vec<DocumentId> = hits.iter().take(2).map(|h| h.id).collect();
    let mut tx = TenantTx::begin(&f.pool, f.small, Default::default()).await.unwrap();
    for id in &deleted {
        tx.documents().soft_delete(*id).await.unwrap();
    }
    tx.commit().await.unwrap();
    let after = search(&f, f.small, query, 100, -1.0).await;
    assert_eq!(after.len(), small_ids.len() - deleted.len());
    assert!(after.iter().all(|h| !deleted.contains(&h.id)));
    let after_threshold = search(&f, f.small, query, 100, 0.7).await;
    assert_eq!(after_threshold.len(), expected.len() - deleted.len());

    // The big tenant before its index exists (a tenant that just crossed the threshold, while
    // its index builds): searched exactly.
    for query in [&f.centers[3], &f.centers[8]] {
        assert_exact(&search(&f, f.big, query, 10, -1.0).await, &exact(&f, f.big, query).await, 10);
    }

    // The pass builds the big tenant's index and leaves the small one alone.
    assert_eq!(f.reconcile(IndexPolicy::DEFAULT).await, [IndexChange::Create(f.big)]);
    assert_eq!(f.reconcile(IndexPolicy::DEFAULT).await, [], "a second pass has nothing to do");

    // The designed plan on every execution: 12 searches on a pool of two connections execute
    // the prepared index query at least six times on one connection, past the five custom plans
    // after which PostgreSQL would otherwise switch to a generic plan (which cannot use a
    // partial index and sorts every row of the tenant instead). Each must scan the index.
    let before = f.index_scans(f.big, 0).await;
    let mut recall = Vec::new();
    for round in 0..12 {
        let query = &f.centers[round % 10];
        let hits = search(&f, f.big, query, 10, -1.0).await;
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| big_ids.contains(&h.id)), "only the big tenant's rows");
        assert_ordered(&hits);
        let truth: BTreeSet<DocumentId> = exact(&f, f.big, query).await.iter().take(10).map(|e| e.0).collect();
        recall.push(hits.iter().filter(|h| truth.contains(&h.id)).count());
    }
    let scans = f.index_scans(f.big, before + 12).await;
    assert_eq!(scans - before, 12, "every search of the big tenant went through its own index");
    assert!(recall.iter().all(|r| *r >= 9), "recall@10 of the index tier: {recall:?}");

    // The threshold in the index tier, and nothing of the small tenant in the big one's results.
    let near = search(&f, f.big, &f.centers[3], 10, 0.7).await;
    assert_eq!(near.len(), 10, "about 200 rows of the big tenant are above 0.7");
    assert!(near.iter().all(|h| h.similarity >= 0.7 && big_ids.contains(&h.id)));
    assert!(near.iter().all(|h| !small_ids.contains(&h.id)));

    // A row with a NaN distance (see `a_stored_vector_with_a_nan_distance_is_never_returned`)
    // changes nothing in the index tier's answer either.
    let reference = search(&f, f.big, &f.centers[3], 10, -1.0).await;
    let mut session = app_session(&f.db, Some(f.big)).await;
    let owner: UserId =
        sqlx::query_scalar("SELECT user_id FROM documents LIMIT 1").fetch_one(&mut session).await.unwrap();
    sqlx::query(
        "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename, embedding_vector) \
         VALUES ($1, $2, 'k', 'b', 'overflow', $3)",
    )
    .bind(f.big)
    .bind(owner)
    .bind(pgvector::Vector::from(vec![f32::MAX; 1024]))
    .execute(&mut session)
    .await
    .unwrap();
    assert_eq!(ids(&search(&f, f.big, &f.centers[3], 10, -1.0).await), ids(&reference));
}

/// The tenant of a pass: created at the threshold, kept in the gap, dropped below it or when the
/// tenant is deleted, rebuilt when a build failed; searches stay exact-quality throughout.
#[tokio::test]
async fn the_reconciler_follows_each_tenant_as_it_grows_shrinks_and_goes() {
    let f = fixture(300).await;
    // Thresholds scaled to the fixture: the big tenant has 250 rows, the small one 50.
    let policy = IndexPolicy { create_at: 40, drop_below: 30, ..IndexPolicy::DEFAULT };
    let mut changes = f.reconcile(policy).await;
    changes.sort_by_key(|c| format!("{c:?}"));
    let mut both = vec![IndexChange::Create(f.small), IndexChange::Create(f.big)];
    both.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(changes, both);

    // The small tenant shrinks into the gap (35 rows): its index stays.
    let victims = exact(&f, f.small, &f.centers[0]).await;
    let mut tx = TenantTx::begin(&f.pool, f.small, Default::default()).await.unwrap();
    for (id, _) in victims.iter().take(15) {
        tx.documents().soft_delete(*id).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(f.reconcile(policy).await, []);
    // Searching a 35-row index: never short, exact.
    let query = &f.centers[1];
    assert_exact(&search(&f, f.small, query, 100, -1.0).await, &exact(&f, f.small, query).await, 100);

    // Below drop_below (25 rows): dropped, and the tenant is searched exactly again.
    let mut tx = TenantTx::begin(&f.pool, f.small, Default::default()).await.unwrap();
    for (id, _) in victims.iter().skip(15).take(10) {
        tx.documents().soft_delete(*id).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(f.reconcile(policy).await, [IndexChange::Drop(search_index::index_name(f.small))]);
    assert_exact(&search(&f, f.small, query, 100, -1.0).await, &exact(&f, f.small, query).await, 100);

    // A failed build (an invalid index, as CREATE INDEX CONCURRENTLY leaves one) is rebuilt.
    sqlx::query("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass($1)")
        .bind(format!("public.{}", search_index::index_name(f.big)))
        .execute(&f.owner)
        .await
        .unwrap();
    assert_eq!(f.reconcile(policy).await, [IndexChange::Rebuild(f.big)]);
    let valid: bool = sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)")
        .bind(format!("public.{}", search_index::index_name(f.big)))
        .fetch_one(&f.owner)
        .await
        .unwrap();
    assert!(valid);

    // A deleted tenant loses its index.
    let mut tx = carevault_db::PlatformTx::begin(&f.platform, Default::default()).await.unwrap();
    tx.tenants().soft_delete(f.big).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(f.reconcile(policy).await, [IndexChange::Drop(search_index::index_name(f.big))]);
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_documents_embedding_t_%'")
            .fetch_one(&f.owner)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

/// One reconciler at a time: while a session holds the lock, a pass does nothing.
#[tokio::test]
async fn a_second_reconciler_waits_its_turn() {
    let f = fixture(300).await;
    let policy = IndexPolicy { create_at: 100, drop_below: 50, ..IndexPolicy::DEFAULT };
    let mut holder = f.owner.acquire().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(search_index::RECONCILE_LOCK)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(locked);
    let busy = search_index::reconcile(&f.owner, &f.pool, &f.platform, policy).await.unwrap();
    assert_eq!(busy, ReconcileOutcome::Busy);
    sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *holder).await.unwrap();
    drop(holder);
    assert_eq!(f.reconcile(policy).await, [IndexChange::Create(f.big)]);
}

/// The cosine distance in f64, from the float32 values pgvector stores.
fn true_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

/// Why `Embedding` bounds its values (1e15 at most, one at least 1e-15): pgvector 0.8 computes
/// `<=>` in float32, so beyond the bounds the distance is silently wrong, and within them it is
/// right. Run as the runtime role; if pgvector ever computes in double precision, the first
/// assertion fails and the bounds can be widened.
#[tokio::test]
async fn pgvector_distances_are_right_within_the_embedding_bounds_only() {
    let db = TestDb::new().await;
    let mut session = app_session(&db, None).await;
    let mut distance = async |a: &[f32], b: &[f32]| -> f64 {
        sqlx::query_scalar("SELECT $1::vector <=> $2::vector")
            .bind(pgvector::Vector::from(a.to_vec()))
            .bind(pgvector::Vector::from(b.to_vec()))
            .fetch_one(&mut session)
            .await
            .unwrap()
    };
    let with = |pairs: &[(usize, f32)]| {
        let mut values = vec![0.0_f32; 1024];
        for (i, v) in pairs {
            values[*i] = *v;
        }
        values
    };
    let diagonal = with(&[(0, 1.0), (1, 1.0)]);

    // Outside the bounds: the squares overflow or underflow float32 and the answer is wrong.
    for outside in [1e20_f32, 1e-30] {
        let got = distance(&with(&[(0, outside)]), &diagonal).await;
        assert!((got - true_distance(&with(&[(0, outside)]), &diagonal)).abs() > 0.2, "{outside:e}: {got}");
    }

    // At the bounds, mixed with each other and with ordinary values: right to float32 precision.
    let big = Embedding::MAX_MAGNITUDE as f32;
    let least = Embedding::MIN_LARGEST_MAGNITUDE as f32;
    let all_big: Vec<f32> = (0..1024).map(|i| if i % 3 == 0 { -big } else { big }).collect();
    let cases = [
        (with(&[(0, least)]), diagonal.clone()),
        (with(&[(0, least), (1, -least)]), with(&[(0, least), (2, least)])),
        (all_big.clone(), all_big.iter().rev().copied().collect()),
        (all_big.clone(), with(&[(0, least)])),
        (with(&[(0, big), (1, least)]), diagonal.clone()),
    ];
    for (a, b) in &cases {
        for values in [a, b] {
            Embedding::parse(values.clone()).expect("the case is within the bounds");
        }
        let (got, want) = (distance(a, b).await, true_distance(a, b));
        assert!(got.is_finite() && (got - want).abs() < 1e-5, "got {got}, want {want}");
    }
}

/// A row whose vector is outside `Embedding`'s bounds (here written directly by the runtime role,
/// as attacker B or a row older than the bounds could be) has a NaN distance; the search leaves
/// it out instead of returning a `null` distance.
#[tokio::test]
async fn a_stored_vector_with_a_nan_distance_is_never_returned() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let clinic = tenant(&platform, "Clinic").await;
    let owner = user(&pool, clinic, "o@o.test", UserRole::Member).await;
    let query = crate::fixtures::embedding(1);
    let mut session = app_session(&db, Some(clinic)).await;
    // float32's largest value everywhere: the squares overflow to inf, and the dot product with a
    // query of mixed signs is a sum of infinities of both signs, NaN.
    let overflowing = pgvector::Vector::from(vec![f32::MAX; 1024]);
    let nan: bool = sqlx::query_scalar("SELECT ($1::vector <=> $2::vector) = 'NaN'")
        .bind(&overflowing)
        .bind(pgvector::Vector::from(query.as_slice().to_vec()))
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert!(nan, "the case must produce a NaN distance to prove anything");
    sqlx::query(
        "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename, embedding_vector) \
         VALUES ($1, $2, 'k', 'b', 'overflow', $3)",
    )
    .bind(clinic)
    .bind(owner.id)
    .bind(&overflowing)
    .execute(&mut session)
    .await
    .unwrap();
    let mut tx = TenantTx::begin(&pool, clinic, crate::fixtures::as_user(&owner)).await.unwrap();
    let normal = crate::fixtures::new_document(&owner, "normal", Some(query.clone()));
    tx.documents().create(normal).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = TenantTx::begin(&pool, clinic, Default::default()).await.unwrap();
    let hits = tx
        .documents()
        .similarity_search(&query, SearchLimit::parse(10).unwrap(), Threshold::parse(-1.0).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let names: Vec<&str> = hits.iter().map(|h| h.filename.as_str()).collect();
    assert_eq!(names, ["normal"]);
}
