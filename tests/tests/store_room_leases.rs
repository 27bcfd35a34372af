//! Group-call room leases in the store (`RoomLeaseStore`, migration 0010), on both backends: one
//! holder at a time, renewals keep the fencing token, a take-over needs the holder it names, a
//! holder that lost its lease can neither renew nor release it, and only expired leases of a
//! stopped holder are dropped — by exactly one of the nodes trying.

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{group, new_user};
use confab_server::store::ConvId;

const TTL: i64 = 5_000;

async fn leases(kind: StoreKind) -> anyhow::Result<()> {
    let s = TestServer::start(kind).await?;
    let a = new_user(&s, Transport::WebSocket, "lease").await?;
    let conv = ConvId(call!(a.client, CreateConversation, group("leases", &[]))?.conversation_id as i64);
    let store = s.store().clone();
    let (a1, b1) = ("node-a@01", "node-b@01");
    let t0 = 1_000_000;

    // The first claim wins; another holder gets the winner back.
    let l = store.claim_room(conv, a1, t0, TTL, None, false).await?;
    ensure!(l.node == a1 && l.fencing == 1 && l.expires_at_ms == t0 + TTL, "{l:?}");
    let other = store.claim_room(conv, b1, t0 + 1, TTL, None, false).await?;
    ensure!(other.node == a1 && other.fencing == 1, "a live lease stays with its holder: {other:?}");
    // Its holder renews it (same fencing) by claim or renewal.
    let again = store.claim_room(conv, a1, t0 + 2, TTL, None, true).await?;
    ensure!(again.node == a1 && again.fencing == 1, "{again:?}");
    ensure!(store.renew_rooms(a1, &[(conv, 1)], t0 + 3, TTL).await? == [conv]);
    // A take-over naming another holder, or the right holder with another token, fails.
    let wrong = store.claim_room(conv, b1, t0 + 4, TTL, Some(("node-c@01", 1)), false).await?;
    ensure!(wrong.node == a1, "{wrong:?}");
    let stale = store.claim_room(conv, b1, t0 + 4, TTL, Some((a1, 7)), false).await?;
    ensure!(stale.node == a1, "{stale:?}");
    // Naming the holder and its token takes the room over, fencing + 1.
    let taken = store.claim_room(conv, b1, t0 + 5, TTL, Some((a1, 1)), false).await?;
    ensure!(taken.node == b1 && taken.fencing == 2, "{taken:?}");
    // The former holder can neither renew nor release it.
    ensure!(store.renew_rooms(a1, &[(conv, 1)], t0 + 6, TTL).await?.is_empty());
    store.release_room(conv, a1, 1).await?;
    ensure!(store.room_lease(conv).await?.is_some_and(|l| l.node == b1));
    // An expired lease goes to the next claimant.
    let late = t0 + 5 + TTL + 1;
    let c = store.claim_room(conv, a1, late, TTL, None, false).await?;
    ensure!(c.node == a1 && c.fencing == 3, "{c:?}");
    // A live holder's leases are not dropped for it; expired ones are, once.
    ensure!(store.drop_node_rooms(a1, late + 1).await?.is_empty(), "still renewed: kept");
    store.expire_rooms(a1).await?;
    let (d1, d2) = tokio::join!(store.drop_node_rooms(a1, late + 2), store.drop_node_rooms(a1, late + 2));
    ensure!(d1?.len() + d2?.len() == 1, "one lease, dropped by exactly one caller");
    ensure!(store.room_lease(conv).await?.is_none());
    // Claiming afresh what one holds already bumps the token (a release in flight cannot hit it).
    let n = store.claim_room(conv, b1, late + 3, TTL, None, false).await?;
    let n2 = store.claim_room(conv, b1, late + 4, TTL, None, false).await?;
    ensure!(n2.node == b1 && n2.fencing == n.fencing + 1, "{n:?} then {n2:?}");
    store.release_room(conv, b1, n.fencing).await?;
    ensure!(store.room_lease(conv).await?.is_some(), "a release with the old token leaves the new lease");
    store.release_room(conv, b1, n2.fencing).await?;
    ensure!(store.room_lease(conv).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn room_leases_on_sqlite() -> anyhow::Result<()> {
    leases(StoreKind::Sqlite).await
}

#[tokio::test]
async fn room_leases_on_postgres() -> anyhow::Result<()> {
    leases(StoreKind::Postgres).await
}
