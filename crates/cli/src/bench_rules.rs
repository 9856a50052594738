//! `shopgraph bench rules`: association rules over a data set's sessions (each user's
//! events cut where they pause for longer than `--session-hours`), timed, with the
//! strongest rules named.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use shopgraph_insight::rules::{self, RuleParams};

use crate::bench::peak_memory;
use crate::report;

pub(crate) fn run(dir: &Path, session_hours: f64, params: &RuleParams) -> anyhow::Result<()> {
    anyhow::ensure!(
        session_hours.is_finite() && session_hours > 0.0,
        "--session-hours must be a positive number of hours, got {session_hours}"
    );
    params.check()?;
    let started = Instant::now();
    let (data, _) = crate::load::read(dir)?;
    let read_secs = started.elapsed().as_secs_f64();

    // Each user's events in time order, cut into sessions at long pauses.
    let started = Instant::now();
    let mut item_of: HashMap<&str, u32> = HashMap::new();
    let mut skus: Vec<&str> = Vec::new();
    let mut by_user: HashMap<&str, Vec<(i64, u32)>> = HashMap::new();
    for e in &data.events {
        let Some(sku) = e.product.as_deref() else { continue };
        let item = *item_of.entry(sku).or_insert_with(|| {
            skus.push(sku);
            (skus.len() - 1) as u32
        });
        by_user.entry(e.user.as_str()).or_default().push((e.occurred_at, item));
    }
    let gap = (session_hours * 3600.0 * 1000.0) as i64;
    let mut sessions: Vec<Vec<u32>> = Vec::new();
    for events in by_user.values_mut() {
        events.sort_unstable();
        let mut session = Vec::new();
        let mut last = i64::MIN;
        for &(at, item) in events.iter() {
            if !session.is_empty() && at.saturating_sub(last) > gap {
                sessions.push(std::mem::take(&mut session));
            }
            session.push(item);
            last = at;
        }
        if !session.is_empty() {
            sessions.push(session);
        }
    }
    let session_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mined = rules::mine(&sessions, params)?;
    let mine_secs = started.elapsed().as_secs_f64();

    let title: HashMap<&str, &str> =
        data.products.iter().map(|p| (p.sku.as_str(), p.title.as_str())).collect();
    let name = |items: &[u32]| -> String {
        items
            .iter()
            .map(|&i| title.get(skus[i as usize]).copied().unwrap_or(skus[i as usize]))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let mean = data.events.iter().filter(|e| e.product.is_some()).count() as f64
        / sessions.len().max(1) as f64;
    let mut text = format!(
        "association rules over {}: {} sessions (pauses over {session_hours} h cut them; {mean:.1} items each) of {} items\n\
         min support {}, min confidence {}, min lift {}, at most {} items\n\
         read {read_secs:.1} s, sessions {session_secs:.2} s, FP-growth and rules {mine_secs:.2} s; peak memory {}\n\
         {} frequent itemsets, {} rules; the strongest:\n",
        dir.display(),
        sessions.len(),
        skus.len(),
        params.min_support,
        params.min_confidence,
        params.min_lift,
        params.max_len,
        peak_memory().unwrap_or_else(|| "unknown".into()),
        mined.itemsets.len(),
        mined.rules.len(),
    );
    for rule in mined.rules.iter().take(10) {
        text.push_str(&format!(
            "  {} → {}  support {:.3}, confidence {:.2}, lift {:.1}\n",
            name(&rule.antecedent),
            name(&rule.consequent),
            rule.support,
            rule.confidence,
            rule.lift
        ));
    }
    report(&text);
    Ok(())
}
