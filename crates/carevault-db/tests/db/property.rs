//! A property test: random interleaved operations by many tenants over a pool with fewer
//! connections than tenants, some failing half-way. Every row read belongs to the caller; every
//! committed write lands in the caller's tenant with its audit row; nothing of a failed
//! transaction survives.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use carevault_db::repo::{DocumentFilter, DocumentUpdate, SearchLimit, Threshold, User};
use carevault_db::{AppPool, AuditAction, DbError, Deleted, DocumentId, DocumentStatus, PageLimit, TenantTx, UserRole};
use carevault_testdb::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::fixtures::{as_user, audit_count, embedding, new_document, new_user, tenant, user};

const TENANTS: usize = 5;
const POOL_CONNECTIONS: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    Create { tenant: usize, seed: u32 },
    List { tenant: usize },
    Read { tenant: usize, pick: usize },
    Update { tenant: usize, pick: usize },
    Search { tenant: usize, seed: u32 },
    FailHalfway { tenant: usize, seed: u32 },
    CreateUser { tenant: usize, seed: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TENANTS;
    prop_oneof![
        3 => (t.clone(), any::<u32>()).prop_map(|(tenant, seed)| Op::Create { tenant, seed }),
        1 => t.clone().prop_map(|tenant| Op::List { tenant }),
        2 => (t.clone(), any::<usize>()).prop_map(|(tenant, pick)| Op::Read { tenant, pick }),
        2 => (t.clone(), any::<usize>()).prop_map(|(tenant, pick)| Op::Update { tenant, pick }),
        1 => (t.clone(), any::<u32>()).prop_map(|(tenant, seed)| Op::Search { tenant, seed }),
        2 => (t.clone(), any::<u32>()).prop_map(|(tenant, seed)| Op::FailHalfway { tenant, seed }),
        1 => (t, any::<u32>()).prop_map(|(tenant, seed)| Op::CreateUser { tenant, seed }),
    ]
}

/// What has committed, per tenant, and what was rolled back.
#[derive(Debug, Default)]
struct Model {
    committed: Vec<BTreeSet<DocumentId>>,
    rolled_back: BTreeSet<DocumentId>,
}

impl Model {
    /// Every committed document and its tenant index, in a stable order.
    fn all(&self) -> Vec<(usize, DocumentId)> {
        self.committed.iter().enumerate().flat_map(|(t, ids)| ids.iter().map(move |id| (t, *id))).collect()
    }

    fn owner_of(&self, id: DocumentId) -> Option<usize> {
        self.committed.iter().position(|ids| ids.contains(&id))
    }
}

async fn run(op: Op, pool: AppPool, owners: Arc<Vec<User>>, model: Arc<Mutex<Model>>) {
    let owner_of = |t: usize| owners[t].clone();
    match op {
        Op::Create { tenant, seed } => {
            let owner = owner_of(tenant);
            let mut tx = TenantTx::begin(&pool, owner.tenant_id, as_user(&owner)).await.unwrap();
            let doc = tx.documents().create(new_document(&owner, "p.pdf", Some(embedding(seed)))).await.unwrap();
            assert_eq!(doc.tenant_id, owner.tenant_id);
            tx.commit().await.unwrap();
            model.lock().unwrap().committed[tenant].insert(doc.id);
        }
        Op::List { tenant } => {
            let owner = owner_of(tenant);
            let mut tx = TenantTx::begin(&pool, owner.tenant_id, as_user(&owner)).await.unwrap();
            let filter = DocumentFilter { deleted: Deleted::Include, ..DocumentFilter::default() };
            let page = tx.documents().list(filter, PageLimit::parse(200).unwrap(), None).await.unwrap();
            tx.commit().await.unwrap();
            let model = model.lock().unwrap();
            for doc in page.items {
                assert_eq!(doc.tenant_id, owner.tenant_id);
                assert!(model.owner_of(doc.id).is_none_or(|t| t == tenant), "listed another tenant's document");
            }
        }
        Op::Read { tenant, pick } | Op::Update { tenant, pick } => {
            let target = {
                let all = model.lock().unwrap().all();
                if all.is_empty() {
                    return;
                }
                all[pick % all.len()]
            };
            let owner = owner_of(tenant);
            let mut tx = TenantTx::begin(&pool, owner.tenant_id, as_user(&owner)).await.unwrap();
            let result = if matches!(op, Op::Read { .. }) {
                tx.documents().get(target.1).await
            } else {
                let update = DocumentUpdate { status: Some(DocumentStatus::Completed), ..DocumentUpdate::default() };
                tx.documents().update(target.1, update).await
            };
            if target.0 == tenant {
                assert_eq!(result.unwrap().tenant_id, owner.tenant_id);
                tx.commit().await.unwrap();
            } else {
                assert!(matches!(result, Err(DbError::NotFound)), "reached another tenant's document: {result:?}");
            }
        }
        Op::Search { tenant, seed } => {
            let owner = owner_of(tenant);
            let mut tx = TenantTx::begin(&pool, owner.tenant_id, as_user(&owner)).await.unwrap();
            let hits = tx
                .documents()
                .similarity_search(&embedding(seed), SearchLimit::parse(100).unwrap(), Threshold::parse(-1.0).unwrap())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let model = model.lock().unwrap();
            for hit in hits {
                assert!(model.owner_of(hit.id).is_none_or(|t| t == tenant), "found another tenant's document");
            }
        }
        Op::FailHalfway { tenant, seed } => {
            let owner = owner_of(tenant);
            let mut tx = TenantTx::begin(&pool, owner.tenant_id, as_user(&owner)).await.unwrap();
            let doc = tx.documents().create(new_document(&owner, "f.pdf", Some(embedding(seed)))).await.unwrap();
            model.lock().unwrap().rolled_back.insert(doc.id);
            let missing = tx.documents().get(DocumentId::new_random()).await;
            assert!(matches!(missing, Err(DbError::NotFound)));
            // The request fails here: the transaction is dropped, never committed.
        }
        Op::CreateUser { tenant, seed } => {
            let owner = owner_of(tenant);
            let mut tx = TenantTx::begin(&pool, owner.tenant_id, as_user(&owner)).await.unwrap();
            let email = format!("u{seed}-{}@p.test", uuid::Uuid::new_v4().simple());
            let created = tx.users().create(new_user(&email, UserRole::Viewer)).await.unwrap();
            assert_eq!(created.tenant_id, owner.tenant_id);
            tx.commit().await.unwrap();
        }
    }
}

async fn run_case(db: &TestDb, pool: &AppPool, ops: Vec<Op>) {
    let platform = db.platform_pool();
    let mut owners = Vec::new();
    for t in 0..TENANTS {
        let id = tenant(&platform, &format!("P{t}")).await;
        owners.push(user(pool, id, &format!("owner{t}@p.test"), UserRole::Member).await);
    }
    let owners = Arc::new(owners);
    let model = Arc::new(Mutex::new(Model { committed: vec![BTreeSet::new(); TENANTS], ..Model::default() }));
    let creates: Vec<usize> =
        ops.iter().filter_map(|op| if let Op::Create { tenant, .. } = op { Some(*tenant) } else { None }).collect();

    let tasks = ops.into_iter().map(|op| tokio::spawn(run(op, pool.clone(), owners.clone(), model.clone())));
    for task in futures::future::join_all(tasks).await {
        if let Err(error) = task {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    let model = Arc::try_unwrap(model).expect("every task has finished").into_inner().unwrap();
    for (t, owner) in owners.iter().enumerate() {
        let mut tx = TenantTx::begin(pool, owner.tenant_id, as_user(owner)).await.unwrap();
        let filter = DocumentFilter { deleted: Deleted::Include, ..DocumentFilter::default() };
        let page = tx.documents().list(filter, PageLimit::parse(200).unwrap(), None).await.unwrap();
        tx.commit().await.unwrap();
        let seen: BTreeSet<DocumentId> = page.items.iter().map(|d| d.id).collect();
        assert_eq!(seen, model.committed[t], "tenant {t} holds exactly what it committed");
        assert!(seen.is_disjoint(&model.rolled_back), "a rolled-back document survived");
        let expected_audits = creates.iter().filter(|c| **c == t).count() as i64;
        assert_eq!(audit_count(db, owner.tenant_id, AuditAction::DocumentCreated.as_str()).await, expected_audits);
    }
}

#[test]
fn random_interleavings_never_cross_tenants() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::new());
    let _context = runtime.enter(); // the pool spawns its maintenance task on creation
    let pool = db.app_pool(POOL_CONNECTIONS);
    let mut runner = TestRunner::new(Config { cases: 12, failure_persistence: None, ..Config::default() });
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            runtime.block_on(run_case(&db, &pool, ops));
            Ok(())
        })
        .unwrap();
}
