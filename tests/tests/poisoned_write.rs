//! One bad write never fails another (issue 13, docs/architecture.md "batched writer"): a write
//! the database itself refuses, inside hundreds of concurrent writes of other users, fails alone
//! on both stores; every other write commits and is acknowledged.

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{group, new_user, send};
use confab_protocol::v1::{self, ErrorCode};

/// A trigger that makes the database refuse any message whose text is "poison".
fn poison_trigger(store: StoreKind) -> &'static str {
    match store {
        StoreKind::Sqlite => {
            "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned write'); END"
        }
        StoreKind::Postgres => {
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.text = 'poison' THEN RAISE EXCEPTION 'poisoned write'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()"
        }
    }
}

async fn a_poisoned_write_fails_alone(store: StoreKind) -> anyhow::Result<()> {
    let s = TestServer::start(store).await?;
    s.execute_sql(poison_trigger(store)).await?;
    let poisoner = new_user(&s, Transport::WebSocket, "poisoner").await?;
    let mine = call!(poisoner.client, CreateConversation, group("mine", &[]))?.conversation_id;
    let mut others = Vec::new();
    for i in 0..4 {
        let u = new_user(&s, Transport::WebSocket, &format!("other{i}")).await?;
        let conv = call!(u.client, CreateConversation, group("theirs", &[]))?.conversation_id;
        others.push((u, conv));
    }
    const PER_USER: usize = 100;
    let mut tasks = tokio::task::JoinSet::new();
    for (u, conv) in &others {
        for n in 0..PER_USER {
            let (c, conv) = (u.client.clone(), *conv);
            tasks
                .spawn(async move { call!(c, SendMessage, send(conv, &format!("o{conv}-{n}"), &format!("fine {n}"))) });
        }
    }
    // Poison sent while the others are queued, so it lands inside their batches.
    let mut poisons = tokio::task::JoinSet::new();
    for n in 0..5 {
        let c = poisoner.client.clone();
        poisons.spawn(async move { call!(c, SendMessage, send(mine, &format!("p{n}"), "poison")) });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        r??;
        ok += 1;
    }
    ensure!(ok == others.len() * PER_USER, "{ok} of {} other sends succeeded", others.len() * PER_USER);
    while let Some(r) = poisons.join_next().await {
        match r? {
            Err(e) => ensure!(e.code() == Some(ErrorCode::Internal), "the poisoned send answered {e}"),
            Ok(r) => anyhow::bail!("the poisoned send was stored: {r:?}"),
        }
    }
    for (u, conv) in &others {
        let h =
            call!(u.client, GetHistory, v1::GetHistory { conversation_id: *conv, limit: 200, ..Default::default() })?;
        ensure!(h.messages.len() == PER_USER, "{} messages stored in {conv}", h.messages.len());
    }
    // The poisoner's next clean write goes through.
    call!(poisoner.client, SendMessage, send(mine, "after", "clean"))?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_poisoned_write_fails_alone() {
    a_poisoned_write_fails_alone(StoreKind::Sqlite).await.expect("sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_poisoned_write_fails_alone() {
    a_poisoned_write_fails_alone(StoreKind::Postgres).await.expect("postgres");
}

/// A failure about the database's state rather than a write's data (here a trigger raising
/// serialization_failure, SQLSTATE 40001) is not blamed on one write: the batch is tried once
/// more, then answered UNAVAILABLE (retry later), and the next write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_state_failures_answer_unavailable() {
    async fn run() -> anyhow::Result<()> {
        let s = TestServer::start(StoreKind::Postgres).await?;
        s.execute_sql(
            "CREATE FUNCTION busy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.text = 'busy' THEN RAISE EXCEPTION 'try again' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER busy BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION busy()",
        )
        .await?;
        let u = new_user(&s, Transport::WebSocket, "busy").await?;
        let conv = call!(u.client, CreateConversation, group("busy", &[]))?.conversation_id;
        let e = call!(u.client, SendMessage, send(conv, "b1", "busy")).expect_err("a failing database");
        ensure!(e.code() == Some(ErrorCode::Unavailable), "answered {e}");
        call!(u.client, SendMessage, send(conv, "b2", "fine"))?;
        s.stop().await
    }
    run().await.expect("postgres");
}
