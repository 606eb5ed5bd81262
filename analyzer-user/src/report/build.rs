//! Aggregating verdicts into ranked causes with bounded examples.
use std::collections::{BTreeMap, HashMap};

use events::model::{Class, RequestEvent};

use super::{Cause, Example, LevelCounts, Unattributed};
use crate::{
    rules::{Confidence, Level, UNATTRIBUTED, Verdict},
    table::{ConnRecord, JoinKind},
};

/// Timeline entries in an example: the first few and the last ones.
const EXCERPT_HEAD: usize = 4;
const EXCERPT_TAIL: usize = 12;

/// One failure as the aggregator sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failure<'a> {
    pub request: Option<&'a RequestEvent>,
    pub intended_unix_ns: u64,
    pub kernel: Option<&'a ConnRecord>,
    pub join: JoinKind,
    /// How many failures it stands for (a kernel-only connection's failed requests).
    pub weight: u64,
}

/// Identifies an example's connection, so examples show distinct connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExampleKey {
    Kernel(u64),
    Loadgen(u64),
    Request(u64),
}

#[derive(Debug, Default)]
struct Acc {
    precedence: usize,
    detail: Option<String>,
    title: String,
    hint: String,
    count: u64,
    loadgen: u64,
    kernel_only: u64,
    levels: LevelCounts,
    why: [Option<String>; 3],
    examples: Vec<Example>,
    keys: Vec<ExampleKey>,
    by_class: BTreeMap<String, u64>,
}

/// Collects verdicts; [`Aggregator::finish`] ranks them.
#[derive(Debug)]
pub(crate) struct Aggregator {
    max_examples: usize,
    causes: HashMap<(&'static str, Option<String>), Acc>,
    unattributed: Acc,
}

impl Aggregator {
    pub fn new(max_examples: usize) -> Self {
        Self {
            max_examples,
            causes: HashMap::new(),
            unattributed: Acc::default(),
        }
    }

    /// Counts one failure under its verdict (`precedence`: the rule's index).
    pub fn add(&mut self, precedence: usize, v: Verdict, f: Failure<'_>) {
        let acc = if v.cause == UNATTRIBUTED {
            &mut self.unattributed
        } else {
            self.causes
                .entry((v.cause, v.detail.clone()))
                .or_insert_with(|| Acc {
                    precedence,
                    detail: v.detail.clone(),
                    title: v.title.clone(),
                    hint: v.hint.clone(),
                    ..Acc::default()
                })
        };
        let w = f.weight.max(1);
        acc.count += w;
        if f.request.is_some() {
            acc.loadgen += w;
        } else {
            acc.kernel_only += w;
        }
        let class = f.request.map_or("kernel_only", |r| {
            r.class.map_or("unclassified", Class::as_str)
        });
        if v.cause == UNATTRIBUTED {
            *acc.by_class.entry(class.to_owned()).or_default() += w;
        }
        let slot = match v.confidence.level {
            Level::High => &mut acc.levels.high,
            Level::Medium => &mut acc.levels.medium,
            Level::Low => &mut acc.levels.low,
        };
        *slot += w;
        let why = &mut acc.why[v.confidence.level as usize];
        if why.is_none() {
            *why = Some(v.confidence.why.clone());
        }
        let key = match (f.kernel, f.request) {
            (Some(k), _) => ExampleKey::Kernel(k.id),
            (None, Some(r)) if r.conn.conn_id != 0 => ExampleKey::Loadgen(r.conn.conn_id),
            (None, Some(r)) => ExampleKey::Request(r.seq),
            (None, None) => return,
        };
        if acc.examples.len() < self.max_examples && !acc.keys.contains(&key) {
            acc.keys.push(key);
            acc.examples.push(example(v, f));
        }
    }

    /// The causes ranked by count (ties: rule precedence, then detail), and the
    /// unattributed bucket; shares of `failures`.
    pub fn finish(self, failures: u64) -> (Vec<Cause>, Unattributed) {
        let share = |n: u64| {
            if failures == 0 {
                0.0
            } else {
                n as f64 / failures as f64
            }
        };
        let mut causes: Vec<((&'static str, Option<String>), Acc)> =
            self.causes.into_iter().collect();
        causes.sort_by(|(a_id, a), (b_id, b)| {
            b.count
                .cmp(&a.count)
                .then(a.precedence.cmp(&b.precedence))
                .then(a_id.cmp(b_id))
        });
        let ranked = causes
            .into_iter()
            .enumerate()
            .map(|(i, ((id, _), acc))| Cause {
                rank: i as u32 + 1,
                id: id.to_owned(),
                detail: acc.detail,
                title: acc.title,
                count: acc.count,
                share: share(acc.count),
                loadgen_failures: acc.loadgen,
                kernel_only_failures: acc.kernel_only,
                confidence: headline(&acc.levels, &acc.why),
                confidence_counts: acc.levels,
                hint: acc.hint,
                examples: acc.examples,
            })
            .collect();
        let u = self.unattributed;
        let unattributed = Unattributed {
            count: u.count,
            share: share(u.count),
            by_class: u.by_class,
            examples: u.examples,
        };
        (ranked, unattributed)
    }
}

/// The most common level (ties towards the higher), with the first why at that level.
fn headline(levels: &LevelCounts, why: &[Option<String>; 3]) -> Confidence {
    let counts = [levels.high, levels.medium, levels.low];
    let best = (0..3)
        .max_by_key(|i| (counts[*i], std::cmp::Reverse(*i)))
        .unwrap_or(0);
    let level = [Level::High, Level::Medium, Level::Low][best];
    Confidence::new(level, why[best].clone().unwrap_or_default())
}

fn example(v: Verdict, f: Failure<'_>) -> Example {
    let k = f.kernel;
    let r = f.request;
    let ts = if r.is_some() {
        f.intended_unix_ns
    } else {
        k.map_or(0, |k| k.first_unix_ns)
    };
    let (timeline, dropped) = match k {
        Some(k) if k.timeline.len() > EXCERPT_HEAD + EXCERPT_TAIL => {
            let n = k.timeline.len();
            let mut t = k.timeline[..EXCERPT_HEAD].to_vec();
            t.extend_from_slice(&k.timeline[n - EXCERPT_TAIL..]);
            (
                t,
                k.timeline_dropped + (n - EXCERPT_HEAD - EXCERPT_TAIL) as u64,
            )
        }
        Some(k) => (k.timeline.clone(), k.timeline_dropped),
        None => (Vec::new(), 0),
    };
    Example {
        join: f.join,
        ts_unix_ns: ts,
        at: events::time::rfc3339_ns(ts),
        sock_cookie: k
            .and_then(|k| k.sock_cookie)
            .or(r.and_then(|r| r.conn.sock_cookie)),
        local: k.and_then(|k| k.local).or(r.and_then(|r| r.conn.local)),
        remote: k.and_then(|k| k.remote).or(r.and_then(|r| r.conn.remote)),
        connection_id: k.map(|k| k.id),
        loadgen_conn_id: r.map(|r| r.conn.conn_id).filter(|c| *c != 0),
        request_seq: r.map(|r| r.seq),
        class: r.and_then(|r| r.class),
        phase: r.and_then(|r| r.phase),
        error: r.map(|r| r.error.clone()).filter(|e| !e.is_empty()),
        confidence: v.confidence,
        evidence: {
            // In time order; host counters (no time) last.
            let mut e = v.evidence;
            e.sort_by_key(|e| e.ts_unix_ns.unwrap_or(u64::MAX));
            e
        },
        timeline,
        timeline_dropped: dropped,
    }
}
