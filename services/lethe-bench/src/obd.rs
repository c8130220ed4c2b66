//! `lethe-bench obd`: the Open Bandit Dataset sample (Saito et al. 2020, CC BY 4.0; obtained by
//! `tests/ml/run.sh` from the `obp` source package) replayed through Lethe's own parts — a sled log,
//! consent records, collected page views and clicks, feature views, the decision features and the
//! slot's linear model — then Lethe's policy evaluated off-policy on the held-out half of the
//! uniform-random log, beside the CTRs the random and Bernoulli Thompson Sampling policies achieved.
//!
//! OBD has no visitor ids: a visitor here is one combination of the four user features (240 of
//! them). An item's category is its `item_feature_1` (12 values). The first half of the random log
//! (by row order, which is time order) trains; the second half is logged data for the estimators.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lethe_bandit::{
    doubly_robust, ips, on_policy, snips, EpsilonGreedy, Estimate, Exploration, LoggedRound, OpeOptions,
};
use lethe_consent::ConsentMethod;
use lethe_crypto::MasterSource;
use lethe_decide::engine::{Model, PolicyParams};
use lethe_decide::features::{self, Context as DecisionContext, D};
use lethe_domain::{
    EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, Retention, SchemaVersion, SubjectId, UtcMicros,
};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
use lethe_policy::Policies;
use serde_json::json;

struct Round {
    item: usize,
    click: bool,
    propensity: f64,
    visitor: String,
}

fn read_log(path: &Path) -> anyhow::Result<Vec<Round>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("{}: run tests/ml/run.sh first", path.display()))?;
    let h = r.headers()?.clone();
    let col = |name: &str| h.iter().position(|c| c == name).with_context(|| format!("no column {name}"));
    let (item, click, prop) = (col("item_id")?, col("click")?, col("propensity_score")?);
    let users: Vec<usize> = (0..4).map(|i| col(&format!("user_feature_{i}"))).collect::<anyhow::Result<_>>()?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        let visitor = users.iter().map(|c| &rec[*c][..8.min(rec[*c].len())]).collect::<Vec<_>>().join("-");
        out.push(Round {
            item: rec[item].parse()?,
            click: &rec[click] == "1",
            propensity: rec[prop].parse()?,
            visitor: format!("obd-{visitor}"),
        });
    }
    Ok(out)
}

fn read_categories(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut r = csv::Reader::from_path(path)?;
    let h = r.headers()?.clone();
    let f1 = h.iter().position(|c| c == "item_feature_1").context("no item_feature_1")?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        out.push(format!("obd-{}", &rec[f1][..8.min(rec[f1].len())]));
    }
    Ok(out)
}

fn event(kind: &str, category: &str, item: usize, n: usize) -> anyhow::Result<NewEvent> {
    let (event_type, version, payload) = match kind {
        "view" => (
            "page.viewed",
            2,
            json!({"message_id": format!("v-{n}"), "properties": {"category": category, "product_id": format!("item-{item}")},
                "host": "zozo.example", "path": format!("/item/{item}"), "title": category}),
        ),
        _ => (
            "element.clicked",
            1,
            json!({"message_id": format!("c-{n}"), "event": "Product Clicked",
                "properties": {"category": category, "product_id": format!("item-{item}")}}),
        ),
    };
    Ok(NewEvent {
        event_type: EventType::parse(event_type)?,
        schema_version: SchemaVersion::new(version)?,
        purpose: Purpose::parse("analytics")?,
        time: UtcMicros::now(),
        retention: Retention::Days(395),
        payload: serde_json::to_vec(&payload)?,
    })
}

fn show(name: &str, e: &Estimate) {
    println!(
        "{name:<44} CTR {:>7.4} %   95 % CI [{:>7.4} %, {:>7.4} %]   rounds {}",
        100.0 * e.value,
        100.0 * e.ci_low,
        100.0 * e.ci_high,
        e.rounds
    );
}

/// Runs the replay and the evaluation.
pub fn run(data: &Path, epsilon: f64) -> anyhow::Result<()> {
    let random = read_log(&data.join("random/all/all.csv"))?;
    let bts = read_log(&data.join("bts/all/all.csv"))?;
    let categories = read_categories(&data.join("random/all/item_context.csv"))?;
    anyhow::ensure!(random.iter().all(|r| r.item < categories.len()), "item ids beyond item_context.csv");
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn EventStore> =
        Arc::new(SledEventLog::open(LogConfig::new(dir.path(), MasterSource::Hex(hex::encode([7u8; 32]))))?);
    let policies = Policies::builtin()?;
    // Every visitor consents (the dataset's users were shown recommendations under ZOZO's terms).
    let mut visitors: HashMap<String, Pseudonym> = HashMap::new();
    for r in random.iter().chain(&bts) {
        if !visitors.contains_key(&r.visitor) {
            visitors.insert(r.visitor.clone(), store.pseudonymize(&SubjectId::parse(&r.visitor)?));
        }
    }
    let consents = visitors
        .values()
        .map(|p| {
            Ok(AppendRequest {
                subject: *p,
                expected: ExpectedVersion::Any,
                events: vec![crate::load::consent(&policies, "JP", ConsentMethod::Import, "ja")?],
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for r in store.append_batch(consents) {
        r?;
    }
    let views = lethe_personalize::Views::replay(Arc::clone(&store), &policies)?;
    let half = random.len() / 2;
    let params = PolicyParams::default();
    let mut model = Model::new(&params)?;
    let ctx = DecisionContext::new(None, UtcMicros(12 * 3_600_000_000));
    let xs_of = |subject: &Pseudonym| -> Vec<[f64; D]> {
        views.with(|p| {
            let view = p.view(subject);
            categories.iter().map(|c| features::vector(view, &ctx, p.catalog().category_id(c), false)).collect()
        })
    };
    // Training: the first half of the random log, in order, through the log and the views.
    let mut pending = Vec::new();
    let mut n = 0;
    for (t, r) in random[..half].iter().enumerate() {
        let subject = visitors[&r.visitor];
        let x = xs_of(&subject)[r.item];
        model.update(&x, f64::from(u8::from(r.click)))?;
        let mut events = vec![event("view", &categories[r.item], r.item, n)?];
        n += 1;
        if r.click {
            events.push(event("click", &categories[r.item], r.item, n)?);
            n += 1;
        }
        pending.push(AppendRequest { subject, expected: ExpectedVersion::Any, events });
        if pending.len() == 100 || t + 1 == half {
            for a in store.append_batch(std::mem::take(&mut pending)) {
                a?;
            }
            views.catch_up()?;
        }
    }
    println!(
        "lethe-bench obd: {} random-policy rounds ({} clicks), {} BTS rounds ({} clicks), {} visitors, {} item categories",
        random.len(),
        random.iter().filter(|r| r.click).count(),
        bts.len(),
        bts.iter().filter(|r| r.click).count(),
        visitors.len(),
        categories.iter().collect::<std::collections::HashSet<_>>().len()
    );
    println!(
        "trained on rounds 1..={half} through the log ({} events) and the feature views ({} subjects); {} outcomes learned",
        store.head().0,
        views.subjects(),
        model.observations()
    );
    // Evaluation: the second half, the model frozen, the views still following the log.
    let policy = EpsilonGreedy::new(epsilon)?;
    let mut rounds = Vec::new();
    let mut targets = Vec::new();
    let mut q = Vec::new();
    let mut uniform = Vec::new();
    for r in &random[half..] {
        let subject = visitors[&r.visitor];
        let xs = xs_of(&subject);
        let scores = model.scores(&xs)?;
        targets.push(policy.probabilities(&scores)?);
        q.push(xs.iter().map(|x| model.expected(x).map(|v| v.clamp(0.0, 1.0))).collect::<Result<Vec<_>, _>>()?);
        uniform.push(vec![1.0 / categories.len() as f64; categories.len()]);
        rounds.push(LoggedRound { action: r.item, reward: f64::from(u8::from(r.click)), propensity: r.propensity });
        let mut events = vec![event("view", &categories[r.item], r.item, n)?];
        n += 1;
        if r.click {
            events.push(event("click", &categories[r.item], r.item, n)?);
            n += 1;
        }
        store.append(AppendRequest { subject, expected: ExpectedVersion::Any, events })?;
        views.catch_up()?;
    }
    let options = OpeOptions::default();
    println!(
        "\nheld-out rounds {}..={} (the same time span of the BTS log for its on-policy CTR):",
        half + 1,
        random.len()
    );
    show("random policy (logged, on-policy)", &on_policy(&rounds)?);
    let bts_rounds: Vec<LoggedRound> = bts[half.min(bts.len())..]
        .iter()
        .map(|r| LoggedRound { action: r.item, reward: f64::from(u8::from(r.click)), propensity: r.propensity })
        .collect();
    show("Bernoulli TS (logged, on-policy)", &on_policy(&bts_rounds)?);
    show("uniform policy, IPS (sanity: = random)", &ips(&rounds, &uniform, &options)?);
    show(&format!("Lethe policy (ε = {epsilon}), IPS"), &ips(&rounds, &targets, &options)?);
    show(&format!("Lethe policy (ε = {epsilon}), SNIPS"), &snips(&rounds, &targets, &options)?);
    show(
        &format!("Lethe policy (ε = {epsilon}), doubly robust"),
        &doubly_robust(&rounds, &targets, |i, a| q[i][a], &options)?,
    );
    println!(
        "\nThe sample is small: about {} clicks in the held-out half, so every interval is wide and the policies' CTRs are not told apart with confidence.",
        rounds.iter().filter(|r| r.reward > 0.0).count()
    );
    Ok(())
}
