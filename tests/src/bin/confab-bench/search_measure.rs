//! The search scenario's measurements on a built store: how long the index takes to catch up
//! after seeding (for the probe's conversations, then for the whole store as seen by the owner,
//! who is in every conversation), a check of every query shape's hits against the generator's
//! ground truth (all pages, in order, each hit highlighted), then each shape searched
//! `repetitions` times by the probe user, the shapes interleaved, with latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use confab_protocol::client::Client;
use confab_protocol::v1;
use serde_json::{Value, json};

use crate::search::Built;
use crate::search_corpus::{
    CJK_WORD, COMMON, Corpus, HAS_CJK, HAS_COMMON, HAS_PHRASE, HAS_RARE, PHRASE, Planned, RARE,
};
use crate::stats::{Samples, progress};

/// Between two polls of a search that still reports index lag.
const POLL_PAUSE: Duration = Duration::from_millis(200);

/// A built store and the two signed-in users that search it.
pub struct Measure<'a> {
    pub corpus: &'a Corpus,
    pub built: &'a Built,
    pub probe: &'a Client,
    pub owner: &'a Client,
}

/// One query shape: its request and how many hits the probe should get.
pub struct QueryShape {
    pub name: &'static str,
    pub request: v1::SearchMessages,
    pub expected: u64,
}

/// All pages of one shape, checked.
pub struct Verified {
    pub hits: u64,
    pub expected: u64,
    pub pages: u64,
    /// Newest first (or, by relevance, never a higher score after a lower one), no repeats.
    pub order_ok: bool,
    /// Every hit of a shape with words has a highlight.
    pub highlights_ok: bool,
}

impl Verified {
    pub fn matches(&self) -> bool {
        self.hits == self.expected && self.order_ok && self.highlights_ok
    }
}

/// One shape's timed searches.
pub struct Timed {
    pub first_ms: f64,
    pub samples: Samples,
    pub errors: u64,
    pub lagging_answers: u64,
    pub page_hits: usize,
}

/// Polls `c`'s searches until no searched conversation lags: seconds since `since` and what the
/// first answer still reported.
async fn wait_for_index(c: &Client, label: &str, since: Instant, limit: Duration) -> anyhow::Result<Value> {
    let req = v1::SearchMessages { query: RARE.into(), limit: 1, ..Default::default() };
    let mut first: Option<(usize, u64)> = None;
    let mut polls = 0u64;
    loop {
        let r = c.search_messages(req.clone()).await?;
        polls += 1;
        let behind: u64 = r.index_lag.iter().map(|l| l.head_seq.saturating_sub(l.indexed_seq)).sum();
        let (lagging, entries) = *first.get_or_insert((r.index_lag.len(), behind));
        if r.index_lag.is_empty() {
            let seconds = since.elapsed().as_secs_f64();
            eprintln!("search: index caught up for {label} {seconds:.2} s after seeding ended ({polls} searches)");
            return Ok(json!({
                "seconds_after_seeding": seconds,
                "searches": polls,
                "first_answer_lagging_conversations": lagging,
                "first_answer_entries_behind": entries,
            }));
        }
        eprintln!(
            "[{:>6.1}s] index catch-up ({label}): {} conversations behind, {behind} log entries",
            since.elapsed().as_secs_f64(),
            r.index_lag.len()
        );
        if since.elapsed() > limit {
            bail!("the index did not catch up for {label} within {limit:?}");
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Measure<'_> {
    /// Waits for the probe's conversations, then the whole store.
    pub async fn catch_up(&self, seeded_at: Instant, limit: Duration) -> anyhow::Result<Value> {
        let probe = wait_for_index(self.probe, "the probe's conversations", seeded_at, limit).await?;
        let store = wait_for_index(self.owner, "every conversation", seeded_at, limit).await?;
        Ok(json!({ "probe": probe, "store": store }))
    }

    fn count(&self, keep: impl Fn(usize, &Planned) -> bool) -> u64 {
        let c = self.corpus;
        c.plan.iter().enumerate().filter(|(i, p)| c.probe_is_member(p.conversation as usize) && keep(*i, p)).count()
            as u64
    }

    /// The query shapes with their ground truth.
    pub fn shapes(&self) -> Vec<QueryShape> {
        let words = |q: &str| v1::SearchMessages { query: q.into(), ..Default::default() };
        let has = |bit: u8| self.count(|_, p| p.needles & bit != 0);
        // A member of the first probe conversation: the probe shares at least it with them.
        let who = self.corpus.members[0][0];
        let sender_id = self.built.sender_ids[who as usize];
        let by_sender = v1::SearchMessages { sender_ids: vec![sender_id], ..Default::default() };
        let times = &self.built.created_at_ms;
        let (t0, t1) = (times.iter().copied().min().unwrap_or(0), times.iter().copied().max().unwrap_or(0));
        let (after, before) = (t0 + (t1 - t0) * 45 / 100, t0 + (t1 - t0) * 55 / 100);
        vec![
            QueryShape { name: "common_word", request: words(COMMON), expected: has(HAS_COMMON) },
            QueryShape { name: "rare_word", request: words(RARE), expected: has(HAS_RARE) },
            QueryShape {
                name: "phrase",
                request: words(&format!("\"{} {}\"", PHRASE[0], PHRASE[1])),
                expected: has(HAS_PHRASE),
            },
            QueryShape { name: "cjk_substring", request: words(CJK_WORD), expected: has(HAS_CJK) },
            QueryShape { name: "sender", request: by_sender.clone(), expected: self.count(|_, p| p.sender == who) },
            QueryShape {
                name: "sender_and_common_word",
                request: v1::SearchMessages { query: COMMON.into(), ..by_sender },
                expected: self.count(|_, p| p.sender == who && p.needles & HAS_COMMON != 0),
            },
            QueryShape {
                name: "date_range",
                request: v1::SearchMessages { sent_after_ms: after, sent_before_ms: before, ..Default::default() },
                expected: self.count(|i, _| (after..before).contains(&times[i])),
            },
            QueryShape {
                name: "common_word_by_relevance",
                request: v1::SearchMessages { order: v1::SearchOrder::Relevance as i32, ..words(COMMON) },
                expected: has(HAS_COMMON),
            },
        ]
    }

    /// Every page of every shape (100 hits a page), against the ground truth.
    pub async fn verify(&self, shapes: &[QueryShape]) -> anyhow::Result<Vec<Verified>> {
        let mut out = Vec::with_capacity(shapes.len());
        for s in shapes {
            let mut req = v1::SearchMessages { limit: 100, ..s.request.clone() };
            let (mut hits, mut pages) = (Vec::new(), 0u64);
            loop {
                let page = self.probe.search_messages(req.clone()).await?;
                pages += 1;
                hits.extend(page.hits);
                if page.next_cursor.is_empty() || hits.len() as u64 > s.expected + 100 {
                    break;
                }
                req.cursor = page.next_cursor;
            }
            let relevance = s.request.order == v1::SearchOrder::Relevance as i32;
            let mut ids: Vec<u64> = hits.iter().filter_map(|h| h.message.as_ref().map(|m| m.message_id)).collect();
            let newest_first = hits.windows(2).all(|w| {
                w[0].message.as_ref().map(|m| m.created_at_ms) >= w[1].message.as_ref().map(|m| m.created_at_ms)
            });
            ids.sort_unstable();
            ids.dedup();
            let v = Verified {
                hits: hits.len() as u64,
                expected: s.expected,
                pages,
                order_ok: ids.len() == hits.len() && (relevance || newest_first),
                highlights_ok: s.request.query.is_empty() || hits.iter().all(|h| !h.highlights.is_empty()),
            };
            if !v.matches() {
                eprintln!(
                    "search: WARNING {}: {} hits, expected {} (order ok: {}, highlights ok: {})",
                    s.name, v.hits, v.expected, v.order_ok, v.highlights_ok
                );
            }
            out.push(v);
        }
        Ok(out)
    }

    /// `repetitions` first-page searches of each shape by the probe, the shapes interleaved.
    pub async fn time(&self, shapes: &[QueryShape], repetitions: usize) -> Vec<Timed> {
        let mut timed: Vec<Timed> = shapes
            .iter()
            .map(|_| Timed { first_ms: 0.0, samples: Samples::default(), errors: 0, lagging_answers: 0, page_hits: 0 })
            .collect();
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let p = progress("searches", done.clone(), stop.clone());
        for rep in 0..repetitions.max(1) {
            for (s, t) in shapes.iter().zip(timed.iter_mut()) {
                let started = Instant::now();
                let r = self.probe.search_messages(s.request.clone()).await;
                let took = started.elapsed();
                done.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) => {
                        if rep == 0 {
                            t.first_ms = ms(took);
                        }
                        t.samples.0.push(took.as_micros() as u64);
                        t.lagging_answers += u64::from(!r.index_lag.is_empty());
                        t.page_hits = r.hits.len();
                    }
                    Err(e) => {
                        t.errors += 1;
                        if t.errors == 1 {
                            eprintln!("search: {} failed: {e}", s.name);
                        }
                    }
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        p.abort();
        timed
    }
}

/// The per-shape results as JSON rows.
pub fn shapes_json(shapes: &[QueryShape], verified: &[Verified], timed: &[Timed]) -> Value {
    let rows: Vec<Value> = shapes
        .iter()
        .zip(verified)
        .zip(timed)
        .map(|((s, v), t)| {
            let mut samples = Samples(t.samples.0.clone());
            let n = samples.0.len();
            let mean = if n == 0 { 0.0 } else { samples.0.iter().sum::<u64>() as f64 / n as f64 / 1000.0 };
            let r = &s.request;
            json!({
                "shape": s.name,
                "query": r.query,
                "sender_ids": r.sender_ids,
                "sent_after_ms": r.sent_after_ms,
                "sent_before_ms": r.sent_before_ms,
                "order": if r.order == v1::SearchOrder::Relevance as i32 { "relevance" } else { "newest" },
                "expected_hits": v.expected,
                "hits": v.hits,
                "pages_of_100": v.pages,
                "hits_match": v.matches(),
                "order_ok": v.order_ok,
                "highlights_ok": v.highlights_ok,
                "first_page_hits": t.page_hits,
                "searches": n,
                "errors": t.errors,
                "lagging_answers": t.lagging_answers,
                "first_ms": t.first_ms,
                "ms_p50": samples.percentile(0.50),
                "ms_p99": samples.percentile(0.99),
                "ms_max": samples.percentile(1.0),
                "ms_mean": mean,
            })
        })
        .collect();
    Value::Array(rows)
}

/// The shapes as a table after the scalar rows.
pub fn print_tables(result: &Value) {
    let Some(shapes) = result["shapes"].as_array() else { return };
    for (who, c) in result["index_catch_up"].as_object().into_iter().flatten() {
        println!(
            "index caught up for {who} {:.2} s after seeding (first answer: {} conversations, {} entries behind)",
            c["seconds_after_seeding"].as_f64().unwrap_or(0.0),
            c["first_answer_lagging_conversations"],
            c["first_answer_entries_behind"]
        );
    }
    println!();
    println!(
        "{:<26} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "shape", "expected", "hits", "match", "first ms", "p50 ms", "p99 ms", "max ms"
    );
    for s in shapes {
        let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
        println!(
            "{:<26} {:>8} {:>8} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            s["shape"].as_str().unwrap_or("?"),
            s["expected_hits"].as_u64().unwrap_or(0),
            s["hits"].as_u64().unwrap_or(0),
            if s["hits_match"] == true { "yes" } else { "NO" },
            f("first_ms"),
            f("ms_p50"),
            f("ms_p99"),
            f("ms_max"),
        );
    }
}
