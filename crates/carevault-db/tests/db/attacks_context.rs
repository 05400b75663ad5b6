//! The attack catalogue's attempts on the verified tenant context (issue 12; docs/THREAT_MODEL.md,
//! "A tenant context the database verifies"): forge a proof, replay one read from
//! `pg_stat_activity` on another connection or in a later transaction, use one after it expired,
//! read or add keys, probe the verifier with proofs of every shape, and call it through a view
//! or a SECURITY DEFINER function of one's own.

use carevault_db::TenantId;
use carevault_db::tenant_context::{Binding, expiry_from_now};
use sqlx::{Connection, PgConnection};

use crate::attacks::{Catalogue, outcome, run, scalar};

/// A connection of the login role, not yet switched to `carevault_app`.
async fn login(c: &Catalogue) -> PgConnection {
    PgConnection::connect(&c.db.app_url()).await.unwrap()
}

/// The number of tenant `b`'s documents `conn` sees, as text.
async fn documents_of(conn: &mut PgConnection, tenant: TenantId) -> String {
    let seen: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM documents WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut *conn)
        .await;
    match seen {
        Ok(n) => n.to_string(),
        Err(e) => outcome::<()>(Err(e), |_| 0),
    }
}

/// Switches the open transaction on `conn` to `carevault_app` with `proof` as its tenant context.
async fn enter_transaction(conn: &mut PgConnection, proof: &str) {
    sqlx::query("SELECT set_config('role', 'carevault_app', true), set_config('app.tenant_context', $1, true)")
        .bind(proof)
        .execute(conn)
        .await
        .unwrap();
}

/// Sets the session's tenant context to `proof` (as a parameter).
async fn set_context(conn: &mut PgConnection, proof: &str) {
    sqlx::query("SELECT set_config('app.tenant_context', $1, false)").bind(proof).execute(&mut *conn).await.unwrap();
}

pub(crate) async fn attempts(c: &mut Catalogue) {
    let (a, b) = (c.a, c.b);
    let key = carevault_testdb::context_key();

    // Forge: B's id in a proof of A's (the MAC no longer matches).
    {
        let mut conn = c.session().await;
        let proof_of_a: String =
            sqlx::query_scalar("SELECT current_setting('app.tenant_context')").fetch_one(&mut conn).await.unwrap();
        let own = documents_of(&mut conn, a).await;
        set_context(&mut conn, &proof_of_a.replace(&a.to_string(), &b.to_string())).await;
        let forged = documents_of(&mut conn, b).await;
        c.record(
            "tenant context",
            "forge a proof: tenant A's proof with B's id",
            "SELECT set_config('app.tenant_context', '<A's proof, tenant replaced by B>', false); count B's documents",
            &["A's proof: 1 of A's; forged: 0 of B's"],
            format!("A's proof: {own} of A's; forged: {forged} of B's"),
            false,
        );
    }

    // Replay a proof read from pg_stat_activity on another connection.
    {
        let mut victim = login(c).await;
        let proof = carevault_testdb::prove_tenant(&mut victim, b).await;
        let victim_sees = documents_of(&mut victim, b).await;
        let victim_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim).await.unwrap();
        // A tool that sends the proof as a literal leaves it in pg_stat_activity.query.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SELECT set_config('app.tenant_context', '{proof}', false)")))
            .execute(&mut victim)
            .await
            .unwrap();
        let mut attacker = login(c).await;
        let seen: Option<String> = sqlx::query_scalar(
            "SELECT substring(query FROM 'app.tenant_context'', ''([^'']+)''') FROM pg_stat_activity WHERE pid = $1",
        )
        .bind(victim_pid)
        .fetch_one(&mut attacker)
        .await
        .unwrap();
        let read = seen.as_deref() == Some(proof.as_str());
        run(&mut attacker, "SET ROLE carevault_app").await;
        set_context(&mut attacker, seen.as_deref().unwrap_or_default()).await;
        let replayed = documents_of(&mut attacker, b).await;
        c.record(
            "tenant context",
            "replay a proof read from pg_stat_activity (same login) on another connection",
            "SELECT query FROM pg_stat_activity ...; SET ROLE carevault_app; SELECT set_config('app.tenant_context', \
             '<the proof read>', false); count B's documents",
            &["victim: 1; read: true; replayed: 0"],
            format!("victim: {victim_sees}; read: {read}; replayed: {replayed}"),
            false,
        );
    }

    // Replay a transaction's proof (what TenantTx sends) in a later transaction of the same
    // connection.
    {
        let mut conn = login(c).await;
        let mut tx = conn.begin().await.unwrap();
        let binding = Binding::read_transaction(&mut tx).await.unwrap();
        let proof = key.prove(b, None, &binding, expiry_from_now());
        enter_transaction(&mut tx, &proof).await;
        let first = documents_of(&mut tx, b).await;
        tx.commit().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        enter_transaction(&mut tx, &proof).await;
        let later = documents_of(&mut tx, b).await;
        drop(tx);
        c.record(
            "tenant context",
            "replay a transaction's proof in a later transaction of the same connection (as a client sharing a \
             server connection behind a transaction pooler would)",
            "BEGIN; SELECT set_config('app.tenant_context', '<t1 proof>', true); ...; COMMIT; BEGIN; the same",
            &["its transaction: 1; later transaction: 0"],
            format!("its transaction: {first}; later transaction: {later}"),
            false,
        );
    }

    // Use a proof after its expiry (made with the key, for this very session).
    {
        let mut conn = login(c).await;
        let binding = Binding::establish_connection(&mut conn).await.unwrap();
        let valid = key.prove(b, None, &binding, expiry_from_now());
        let expired = key.prove(b, None, &binding, expiry_from_now() - 61 - 60);
        run(&mut conn, "SET ROLE carevault_app").await;
        set_context(&mut conn, &valid).await;
        let before = documents_of(&mut conn, b).await;
        set_context(&mut conn, &expired).await;
        let after = documents_of(&mut conn, b).await;
        c.record(
            "tenant context",
            "use a proof after its expiry",
            "SELECT set_config('app.tenant_context', '<proof of this session, expired a minute ago>', false)",
            &["valid: 1; expired: 0"],
            format!("valid: {before}; expired: {after}"),
            false,
        );
    }

    // The keys.
    let e = ["error 42501"];
    c.attack("tenant context", "read the key table", "SELECT * FROM carevault_private.tenant_context_keys", &e).await;
    c.attack(
        "tenant context",
        "read the key table as the login role",
        "RESET ROLE; SELECT * FROM carevault_private.tenant_context_keys",
        &e,
    )
    .await;
    c.attack(
        "tenant context",
        "add a key of one's own",
        "INSERT INTO carevault_private.tenant_context_keys (kid, inner_pad, outer_pad) \
         VALUES ('evil', decode(repeat('36', 64), 'hex'), decode(repeat('5c', 64), 'hex'))",
        &e,
    )
    .await;
    c.attack(
        "tenant context",
        "replace the verifier",
        "CREATE OR REPLACE FUNCTION public.carevault_current_tenant() RETURNS uuid LANGUAGE sql \
         RETURN '00000000-0000-0000-0000-000000000000'",
        &e,
    )
    .await;

    // Probe the verifier with proofs of every shape: none may verify, none may raise.
    {
        let mut conn = c.session().await;
        let proof_of_a: String =
            sqlx::query_scalar("SELECT current_setting('app.tenant_context')").fetch_one(&mut conn).await.unwrap();
        let (head, mac) = proof_of_a.rsplit_once('.').unwrap();
        let zeros = "0".repeat(64);
        let probes = [
            String::new(),
            "x".into(),
            ".....".into(),
            "c1".into(),
            "c1.test".into(),
            format!("c1.test.{b}..9999999999.{zeros}"),
            format!("t1.test.{b}..9999999999.{mac}"),
            format!("c1.test.{b}..9999999999.{}", "g".repeat(64)),
            format!("c1.no-such-key.{b}..9999999999.{mac}"),
            format!("c1.test.not-a-uuid..9999999999.{mac}"),
            format!("c1.test.{b}..not-a-number.{mac}"),
            format!("c1.test.{b}..99999999999999999999999999.{mac}"),
            format!("c1.test.{b}..-1.{mac}"),
            format!("C1{}", &proof_of_a[2..]),
            format!("{head}.{}", mac.to_uppercase()),
            format!("{proof_of_a}.extra"),
            format!(" {proof_of_a}"),
            format!("{head}.{}", &mac[..63]),
            "c1.tést.é.é.é.é".into(),
            "a".repeat(10_000),
            proof_of_a.replace("c1.", "t1."),
        ];
        let mut verified = 0;
        let mut errors = Vec::new();
        for probe in &probes {
            set_context(&mut conn, probe).await;
            match sqlx::query_scalar::<_, Option<uuid::Uuid>>("SELECT public.carevault_current_tenant()")
                .fetch_one(&mut conn)
                .await
            {
                Ok(Some(_)) => verified += 1,
                Ok(None) => {}
                Err(e) => errors.push(outcome::<()>(Err(e), |_| 0)),
            }
        }
        set_context(&mut conn, &proof_of_a).await;
        let control = scalar(&mut conn, "SELECT count(*) FROM documents").await;
        c.record(
            "tenant context",
            "probe the verifier with proofs of every shape (empty, truncated, wrong kind, unknown key, bad UUID, \
             bad or huge expiry, altered or upper-case MAC, extra field, 10,000 characters...)",
            "SELECT set_config('app.tenant_context', '<probe>', false); SELECT public.carevault_current_tenant()",
            &[&format!("{} probes: 0 verified, errors: []; A's own proof afterwards: Ok(1)", probes.len())],
            format!(
                "{} probes: {verified} verified, errors: {errors:?}; A's own proof afterwards: {control:?}",
                probes.len()
            ),
            false,
        );
    }

    // Through a view or a SECURITY DEFINER function of one's own: B can create neither (no CREATE
    // on any schema, and no TEMPORARY since migration 18).
    {
        let mut conn = c.session().await;
        let view = run(&mut conn, "CREATE TEMPORARY VIEW cv_v AS SELECT public.carevault_current_tenant() AS t").await;
        let definer = run(
            &mut conn,
            "CREATE FUNCTION pg_temp.cv_f() RETURNS uuid LANGUAGE sql SECURITY DEFINER \
             AS 'SELECT public.carevault_current_tenant()'",
        )
        .await;
        c.record(
            "tenant context",
            "call the verifier through a view or a SECURITY DEFINER function of one's own",
            "CREATE TEMPORARY VIEW cv_v AS SELECT public.carevault_current_tenant(); CREATE FUNCTION pg_temp.cv_f() \
             ... SECURITY DEFINER AS 'SELECT public.carevault_current_tenant()'",
            &["error 42501, error 42501"],
            format!("{view}, {definer}"),
            false,
        );
    }

    // Leave a trap on the connection for the next transaction (another tenant's, behind a
    // transaction pooler or after SQL injected into one request): a temporary audit_logs with a
    // trigger, found before the real one since pg_temp is searched first for tables.
    c.attack(
        "tenant context",
        "leave a temporary audit_logs with a trigger on the connection, for the next tenant's transaction to run",
        "RESET ROLE; CREATE TEMPORARY TABLE audit_logs (LIKE public.audit_logs)",
        &["error 42501"],
    )
    .await;
}
