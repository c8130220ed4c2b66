//! Off-policy evaluation of a candidate decision policy from the logged decisions of a slot: what
//! CTR would it have had, estimated by IPS, self-normalized IPS and doubly robust, beside the
//! logged policy's own CTR, each with a 95 % interval.
//!
//! The candidate is the linear model of `params` (its prior, no online learning) with ε-greedy
//! exploration. The doubly robust estimator's reward model is the live version's current linear
//! model, clamped to `[0, 1]`.

use lethe_bandit::{doubly_robust, ips, on_policy, snips, EpsilonGreedy, Exploration, LoggedRound, OpeOptions};
use serde_json::{json, Value};

use crate::engine::{DecideError, Engine, Model, PolicyParams};

/// Evaluates `params` on the slot's logged decisions.
///
/// # Errors
/// Bad parameters; `Conflict` when nothing is logged yet.
pub fn evaluate_slot(
    engine: &Engine,
    slot: usize,
    params: &PolicyParams,
    max_weight: Option<f64>,
) -> Result<Value, DecideError> {
    let bad = |e: lethe_bandit::BanditError| DecideError::BadParams(e.to_string());
    params.check_new()?;
    let logged = engine.logged(slot);
    if logged.is_empty() {
        return Err(DecideError::Conflict(
            "no personalized decision of this slot with an impression is in its attribution window yet".into(),
        ));
    }
    let s = &engine.slots.all()[slot];
    let target = Model::new(params).map_err(bad)?;
    let policy = EpsilonGreedy::new(params.epsilon.unwrap_or(s.epsilon)).map_err(bad)?;
    let live = engine.live_model(slot);
    let mut rounds = Vec::with_capacity(logged.len());
    let mut probabilities = Vec::with_capacity(logged.len());
    for (xs, chosen, reward, propensity) in &logged {
        let scores = target.scores(xs).map_err(bad)?;
        probabilities.push(policy.probabilities(&scores).map_err(bad)?);
        rounds.push(LoggedRound { action: *chosen, reward: *reward, propensity: *propensity });
    }
    let q = |round: usize, action: usize| {
        logged
            .get(round)
            .and_then(|(xs, ..)| xs.get(action))
            .map_or(0.0, |x| live.expected(x).unwrap_or(0.0).clamp(0.0, 1.0))
    };
    let options = OpeOptions { max_weight };
    Ok(json!({
        "slot": s.id,
        "rounds": rounds.len(),
        "logged": on_policy(&rounds).map_err(bad)?,
        "ips": ips(&rounds, &probabilities, &options).map_err(bad)?,
        "snips": snips(&rounds, &probabilities, &options).map_err(bad)?,
        "doubly_robust": doubly_robust(&rounds, &probabilities, q, &options).map_err(bad)?,
        "note": "estimates of the candidate's click-through rate per decision; intervals are 95 % normal approximations",
    }))
}
