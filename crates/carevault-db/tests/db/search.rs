//! Similarity search on 5,000 embedded rows where one tenant holds 1 %: exactly
//! min(limit, eligible rows), threshold honoured, deleted rows skipped, ordered by distance, equal
//! to an exact scan computed independently in Rust.

use std::collections::BTreeSet;

use carevault_db::repo::{SearchHit, SearchLimit, Threshold};
use carevault_db::{AppPool, AuditAction, DocumentId, Embedding, TenantId, TenantTx, UserId, UserRole};
use carevault_testdb::TestDb;
use sqlx::Acquire;

use crate::fixtures::{app_session, tenant, user};

const SMALL_ROWS: i64 = 50;
const TOTAL_ROWS: i64 = 5_000;

/// The index definition of migration 6, rebuilt after the bulk load (building an HNSW index over
/// rows already loaded is much faster than inserting into it row by row).
const HNSW_INDEX: &str = "CREATE INDEX idx_documents_embedding_hnsw ON documents \
    USING hnsw (embedding_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64) \
    WHERE embedding_vector IS NOT NULL AND deleted_at IS NULL";

struct Fixture {
    db: TestDb,
    pool: AppPool,
    small: TenantId,
    big: TenantId,
    centers: Vec<Embedding>,
}

/// 10 cluster centres; each row is its centre plus noise, so a centre query has high-similarity
/// neighbours (≈0.8) and a clear gap to the rest (≈0).
async fn fixture() -> Fixture {
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
        "SET maintenance_work_mem = '256MB'",
        "DROP INDEX idx_documents_embedding_hnsw",
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
    .bind(TOTAL_ROWS)
    .execute(&mut *conn)
    .await
    .unwrap();
    let loaded = std::time::Instant::now();
    sqlx::query(HNSW_INDEX).execute(&mut *conn).await.unwrap();
    eprintln!("index build: {:?}", loaded.elapsed());
    sqlx::query("ANALYZE documents").execute(&mut *conn).await.unwrap();
    let centers: Vec<Vec<f32>> =
        sqlx::query_scalar("SELECT v FROM centers ORDER BY k").fetch_all(&mut *conn).await.unwrap();
    let centers = centers.into_iter().map(|c| Embedding::parse(c).unwrap()).collect();
    Fixture { db, pool, small, big, centers }
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
    let mut distances: Vec<(DocumentId, f64)> = rows
        .into_iter()
        .map(|(id, v)| {
            let v = v.as_slice();
            let dot: f64 = q.iter().zip(v).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            let nq: f64 = q.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            let nv: f64 = v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            (id, 1.0 - dot / (nq * nv))
        })
        .collect();
    distances.sort_by(|a, b| a.1.total_cmp(&b.1));
    distances
}

async fn last_scan(f: &Fixture, tenant: TenantId) -> String {
    let mut conn = app_session(&f.db, Some(tenant)).await;
    sqlx::query_scalar("SELECT metadata->>'scan' FROM audit_logs WHERE action = $1 ORDER BY created_at DESC LIMIT 1")
        .bind(AuditAction::DocumentSearched.as_str())
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

fn assert_ordered(hits: &[SearchHit]) {
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "not ordered by distance");
    assert!(hits.iter().all(|h| (h.similarity - (1.0 - h.distance)).abs() < 1e-9));
}

#[tokio::test]
async fn similarity_search_is_exact_complete_and_tenant_scoped() {
    let f = fixture().await;
    let small_rows = exact(&f, f.small, &f.centers[0]).await;
    let small_ids: BTreeSet<DocumentId> = small_rows.iter().map(|r| r.0).collect();
    assert_eq!(small_ids.len(), SMALL_ROWS as usize);
    let big_ids: BTreeSet<DocumentId> = exact(&f, f.big, &f.centers[0]).await.iter().map(|r| r.0).collect();
    assert_eq!(big_ids.len(), (TOTAL_ROWS - SMALL_ROWS) as usize);

    // The small tenant: min(limit, eligible) rows, exactly the exact top-k, in order.
    for (query, limit) in [(&f.centers[3], 10u32), (&f.centers[7], 1), (&f.centers[0], 100)] {
        let hits = search(&f, f.small, query, limit, -1.0).await;
        let expected = exact(&f, f.small, query).await;
        assert_eq!(hits.len(), (limit as usize).min(small_ids.len()));
        assert_eq!(
            hits.iter().map(|h| h.id).collect::<Vec<_>>(),
            expected.iter().take(hits.len()).map(|e| e.0).collect::<Vec<_>>()
        );
        for (hit, (_, distance)) in hits.iter().zip(&expected) {
            assert!((hit.distance - distance).abs() < 1e-4, "{} vs {distance}", hit.distance);
        }
        assert_ordered(&hits);
    }
    assert_eq!(last_scan(&f, f.small).await, "exact");

    // The threshold: exactly the rows at or above it.
    let query = &f.centers[3];
    let hits = search(&f, f.small, query, 100, 0.7).await;
    let expected: Vec<DocumentId> =
        exact(&f, f.small, query).await.iter().filter(|e| 1.0 - e.1 >= 0.7).map(|e| e.0).collect();
    assert!(!expected.is_empty() && expected.len() < small_ids.len(), "the fixture separates clusters");
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), expected);
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

    // The big tenant goes through the HNSW index, and still only sees its own rows.
    let hits = search(&f, f.big, &f.centers[3], 10, -1.0).await;
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| big_ids.contains(&h.id)));
    assert_ordered(&hits);
    assert_eq!(last_scan(&f, f.big).await, "index");
    let near = search(&f, f.big, &f.centers[3], 10, 0.7).await;
    assert_eq!(near.len(), 10, "about 495 rows of the big tenant are above 0.7");
    assert!(near.iter().all(|h| h.similarity >= 0.7 && big_ids.contains(&h.id)));
    // Nothing of the small tenant ever appears in the big tenant's results, nor the reverse.
    assert!(near.iter().all(|h| !small_ids.contains(&h.id)));

    // A row with a NaN distance (see `a_stored_vector_with_a_nan_distance_is_never_returned`)
    // changes nothing in the index scan's answer either.
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
    let again = search(&f, f.big, &f.centers[3], 10, -1.0).await;
    assert_eq!(last_scan(&f, f.big).await, "index");
    let ids = |hits: &[SearchHit]| hits.iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&hits));
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
