//! W2 (one big room) and W3 (many groups of 10): members sign in and join their rooms, then
//! senders post 100-byte stamped messages at a rate that ramps up step by step. Every delivery is
//! counted against the step its message was sent in (the message carries it), with its send-to-deliver latency; a step
//! reports deliveries per second, latency p50/p99 and the share of expected deliveries that came.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::peer::{Member, OnDelivery, Peer, Room};
use crate::probe::Probes;
use crate::stats::{Samples, now_ns, progress, stamp_of, stamped_text};

/// The shape of a room workload.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: &'static str,
    pub groups: usize,
    pub members_per_group: usize,
    pub senders_per_group: usize,
    /// Total messages per second, one step each.
    pub rates: Vec<u32>,
    pub step: Duration,
    /// Sends a sender keeps in flight before it counts ticks as missed.
    pub max_in_flight: u64,
}

/// What one step saw.
#[derive(Default)]
struct Step {
    attempted: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    /// Ticks skipped because the sender already had `max_in_flight` sends waiting.
    missed: AtomicU64,
    delivered: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

struct Shared {
    steps: Vec<Step>,
    deliveries: Arc<AtomicU64>,
}

impl Shared {
    fn on_delivery(&self, text: &str) {
        let now = now_ns();
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let Some((sent, k)) = stamp_of(text) else { return };
        let Some(step) = self.steps.get(usize::from(k)) else { return };
        step.delivered.fetch_add(1, Ordering::Relaxed);
        let us = ((now.saturating_sub(sent)) / 1000).min(u64::from(u32::MAX)) as u32;
        step.latencies_us.lock().expect("latencies").push(us);
    }
}

/// Runs the plan. Member `i` of group `g` connects to node `(g + i) % nodes`, so a group's members
/// alternate between nodes and its senders (the first members) too, and group `g`'s first
/// sender is on node `g % nodes`. `probes` are sampled around every step and the whole ramp, and
/// around a window of one step's length without traffic before the ramp (`costs_idle`).
pub async fn run(peer: &Peer, plan: &Plan, probes: &Probes) -> anyhow::Result<serde_json::Value> {
    let members_total = plan.groups * plan.members_per_group;
    let shared = Arc::new(Shared {
        steps: plan.rates.iter().map(|_| Step::default()).collect(),
        deliveries: Arc::new(AtomicU64::new(0)),
    });
    eprintln!(
        "{}: signing in {members_total} members ({} groups of {}) on {}",
        plan.scenario,
        plan.groups,
        plan.members_per_group,
        peer.name()
    );
    let setup = Instant::now();
    let joined = Arc::new(AtomicU64::new(0));
    let stop_setup = Arc::new(AtomicBool::new(false));
    let p = progress("members signed in", joined.clone(), stop_setup.clone());
    let mut groups: Vec<(Room, Vec<Arc<Member>>)> = Vec::with_capacity(plan.groups);
    for g in 0..plan.groups {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..plan.members_per_group {
            let (peer, shared, joined) = (peer.clone(), shared.clone(), joined.clone());
            set.spawn(async move {
                let on: OnDelivery = Arc::new(move |t: &str| shared.on_delivery(t));
                let m = peer.member(g + i, &format!("g{g}m{i}"), on).await;
                joined.fetch_add(1, Ordering::Relaxed);
                m.map(|m| (i, m))
            });
        }
        let mut members: Vec<(usize, Member)> = Vec::with_capacity(plan.members_per_group);
        while let Some(r) = set.join_next().await {
            members.push(r??);
        }
        members.sort_by_key(|(i, _)| *i);
        let members: Vec<Member> = members.into_iter().map(|(_, m)| m).collect();
        let room = peer.room(&members).await?;
        groups.push((room, members.into_iter().map(Arc::new).collect()));
    }
    stop_setup.store(true, Ordering::Relaxed);
    p.abort();
    let setup_secs = setup.elapsed().as_secs_f64();
    eprintln!(
        "{}: set up in {setup_secs:.1} s; ramping {:?} messages/s, {:?} per step",
        plan.scenario, plan.rates, plan.step
    );

    let senders: Vec<(Room, Arc<Member>)> = groups
        .iter()
        .flat_map(|(room, ms)| ms.iter().take(plan.senders_per_group).map(move |m| (room.clone(), m.clone())))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let p = progress("deliveries", shared.deliveries.clone(), stop.clone());
    // With probes, what the processes spend without traffic (timers, heartbeats, housekeeping)
    // over one step's length, so a step's cost can be told from the standing cost.
    let idle = if probes.is_empty() {
        serde_json::Value::Null
    } else {
        let from = probes.sample().await?;
        tokio::time::sleep(plan.step).await;
        probes.cost(&from, &probes.sample().await?, 0, 0)
    };
    let mut marks = vec![probes.sample().await?];
    let mut completed_steps = 0;
    for (k, &rate) in plan.rates.iter().enumerate() {
        let step_end = Instant::now() + plan.step;
        let interval = Duration::from_secs_f64(senders.len() as f64 / f64::from(rate.max(1)));
        eprintln!("{}: step {} at {rate} messages/s", plan.scenario, k + 1);
        let senders_len = senders.len();
        let mut tasks = Vec::with_capacity(senders_len);
        for (s, (room, member)) in senders.iter().enumerate() {
            let (room, member, shared) = (room.clone(), member.clone(), shared.clone());
            let max_in_flight = plan.max_in_flight;
            tasks.push(tokio::spawn(async move {
                let in_flight = Arc::new(AtomicU64::new(0));
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + interval.mul_f64(s as f64 / senders_len as f64),
                    interval,
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    tick.tick().await;
                    if Instant::now() >= step_end {
                        break;
                    }
                    let st = &shared.steps[k];
                    if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                        st.missed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    st.attempted.fetch_add(1, Ordering::Relaxed);
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let (room, member, shared, in_flight) =
                        (room.clone(), member.clone(), shared.clone(), in_flight.clone());
                    tokio::spawn(async move {
                        let r = member
                            .send(&room, confab_protocol::frames::new_client_msg_id(), stamped_text(100, k as u16))
                            .await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        let st = &shared.steps[k];
                        match r {
                            Ok(()) => st.acked.fetch_add(1, Ordering::Relaxed),
                            Err(_) => st.failed.fetch_add(1, Ordering::Relaxed),
                        };
                    });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        marks.push(probes.sample().await?);
        completed_steps = k + 1;
        let st = &shared.steps[k];
        let (attempted, missed) = (st.attempted.load(Ordering::Relaxed), st.missed.load(Ordering::Relaxed));
        if missed > (attempted + missed) / 10 {
            eprintln!("{}: saturated at {rate} messages/s ({missed} ticks missed); stopping the ramp", plan.scenario);
            break;
        }
        // The server is the limit once a step's deliveries come a second late or a fifth of them
        // have not come by its end: a higher rate would only queue.
        let p99_ms = {
            let lat = st.latencies_us.lock().expect("latencies");
            Samples(lat.iter().map(|&v| u64::from(v)).collect()).percentile(0.99)
        };
        let expected_now = st.acked.load(Ordering::Relaxed) * plan.members_per_group as u64;
        let delivered_now = st.delivered.load(Ordering::Relaxed);
        if p99_ms > 1000.0 || (expected_now > 0 && delivered_now * 5 < expected_now * 4) {
            eprintln!(
                "{}: the server is the limit at {rate} messages/s (p99 {p99_ms:.0} ms, {delivered_now} of {expected_now} \
                 delivered by the step's end); stopping the ramp",
                plan.scenario
            );
            break;
        }
    }
    // Let the last deliveries arrive: until every expected one came or 5 s without progress.
    let expected = |st: &Step| {
        (st.acked.load(Ordering::Relaxed) + st.failed.load(Ordering::Relaxed)) * plan.members_per_group as u64
    };
    let mut last = (shared.deliveries.load(Ordering::Relaxed), Instant::now());
    loop {
        let pending = shared.steps.iter().any(|st| st.delivered.load(Ordering::Relaxed) < expected(st))
            || shared.steps.iter().any(|st| {
                st.attempted.load(Ordering::Relaxed)
                    > st.acked.load(Ordering::Relaxed) + st.failed.load(Ordering::Relaxed)
            });
        if !pending || last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = shared.deliveries.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let end = probes.sample().await?;
    stop.store(true, Ordering::Relaxed);
    p.abort();
    let closed = groups.iter().flat_map(|(_, ms)| ms.iter()).filter(|m| !m.is_open()).count();
    let step_secs = plan.step.as_secs_f64();
    let mut steps = Vec::new();
    let mut best: Option<serde_json::Value> = None;
    for (k, st) in shared.steps.iter().enumerate().take(completed_steps) {
        let mut s = Samples(st.latencies_us.lock().expect("latencies").iter().map(|&v| u64::from(v)).collect());
        let delivered = st.delivered.load(Ordering::Relaxed);
        let exp = expected(st);
        let (p50, p99) = (s.percentile(0.50), s.percentile(0.99));
        let acked = st.acked.load(Ordering::Relaxed);
        let costs = probes.cost(&marks[k], &marks[k + 1], delivered, acked);
        let row = json!({
            "target_messages_per_second": plan.rates[k],
            "sent": st.attempted.load(Ordering::Relaxed),
            "acked": st.acked.load(Ordering::Relaxed),
            "failed": st.failed.load(Ordering::Relaxed),
            "missed_ticks": st.missed.load(Ordering::Relaxed),
            "deliveries": delivered,
            "expected_deliveries": exp,
            "delivered_ratio": if exp == 0 { 0.0 } else { delivered as f64 / exp as f64 },
            "deliveries_per_second": delivered as f64 / step_secs,
            "latency_ms_p50": p50,
            "latency_ms_p99": p99,
            "cpu_us_per_delivery": costs["cpu_us_per_delivery"],
            "deliveries_per_cpu_second": costs["deliveries_per_cpu_second"],
            "costs": costs,
        });
        let good = p99 <= 50.0 && exp > 0 && delivered == exp;
        if good
            && best.as_ref().is_none_or(|b| b["deliveries_per_second"].as_f64() < row["deliveries_per_second"].as_f64())
        {
            best = Some(row.clone());
        }
        eprintln!(
            "{}: step {} target {}/s: {:.0} deliveries/s, {:.1}% delivered, p50 {p50:.1} ms, p99 {p99:.1} ms",
            plan.scenario,
            k + 1,
            plan.rates[k],
            delivered as f64 / step_secs,
            row["delivered_ratio"].as_f64().unwrap_or(0.0) * 100.0
        );
        steps.push(row);
    }
    let sum = |f: fn(&Step) -> u64| shared.steps.iter().take(completed_steps).map(f).sum::<u64>();
    let ramp = probes.cost(
        &marks[0],
        &end,
        sum(|st| st.delivered.load(Ordering::Relaxed)),
        sum(|st| st.acked.load(Ordering::Relaxed)),
    );
    let nodes = peer.nodes();
    let mut per_node = vec![0u64; nodes];
    for g in 0..plan.groups {
        for i in 0..plan.members_per_group {
            per_node[(g + i) % nodes] += 1;
        }
    }
    Ok(json!({
        "scenario": plan.scenario,
        "peer": peer.name(),
        "groups": plan.groups,
        "members_per_group": plan.members_per_group,
        "senders_per_group": plan.senders_per_group,
        "step_seconds": step_secs,
        "setup_seconds": setup_secs,
        "nodes": nodes,
        "members_per_node": per_node,
        "connections_closed_by_server": closed,
        "generator_cpus_allowed": crate::probe::cpus_allowed(),
        "costs_idle": idle,
        "costs_over_ramp": ramp,
        "best_step_with_p99_le_50ms_and_all_delivered": best,
        "steps": steps,
    }))
}
