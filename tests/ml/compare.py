#!/usr/bin/env python3
"""Side-by-side comparison of Lethe's models (lethe-ml) with LightGBM and `implicit`.

Reads the `lethe-results.json` written by `lethe-bench ml` (figures of Lethe's models, the
parameters they used and the paths of the CSV files they were trained on), trains the reference
libraries on the *same* files and folds with the *same* hyperparameters, evaluates them with
metric definitions identical to `lethe_ml::metrics` (re-implemented below in numpy and checked
against the Rust unit tests' hand cases), and prints one combined table.

- Engagement (click) model: LightGBM, binary objective, with Lethe's GBM parameters (trees, depth,
  learning rate, L2, gamma, minimum hessian, bins, sampling), single-threaded like forust-ml in
  lethe-ml; plus LightGBM with its library defaults for reference. AUC (ties count one half, via
  average ranks), log loss (clipped to [1e-15, 1 - 1e-15]), training seconds per fold.
- Recommendation: `implicit` AlternatingLeastSquares with Lethe's ALS parameters (factors,
  regularization, alpha, iterations), single-threaded, float32 and conjugate-gradient solver as
  `implicit` defaults to; `implicit` item-item cosine with Lethe's neighbour count; a popularity
  baseline. NDCG@10 with binary relevance and the ideal DCG over min(k, |relevant|), precision@10
  with denominator k; candidates are the items seen in training, minus the user's training items,
  ranked by score descending then item id ascending (as lethe-ml).

Data: the synthetic files come from `lethe_ml::synthetic`. The Open Bandit Dataset sample is by
Yuta Saito, Shunsuke Aihara, Megumi Matsutani and Yusuke Narita, "Open Bandit Dataset and Pipeline:
Towards Realistic and Reproducible Off-Policy Evaluation" (2020, arXiv:2008.07146; NeurIPS 2021
Datasets and Benchmarks), ZOZO, Inc., licensed CC BY 4.0; `tests/ml/run.sh` takes it from the
`obp` source package on PyPI.

Usage: compare.py PATH/TO/lethe-results.json
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

LOG_LOSS_EPS = 1e-15

# --------------------------------------------------------------------------------------------
# Metrics, defined exactly as lethe_ml::metrics.
# --------------------------------------------------------------------------------------------


def auc_roc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC: ascending ranks, tied scores share their mean rank."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.size == 0 or labels.size != scores.size or not np.all(np.isfinite(scores)):
        raise ValueError("auc: empty, mismatched or non-finite input")
    p = int(labels.sum())
    n = labels.size - p
    if p == 0 or n == 0:
        raise ValueError("auc: single class")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    starts = ends - counts  # 0-based position of the first member
    mean_rank = (starts + 1 + ends) / 2.0
    positive_rank_sum = float(mean_rank[inverse][labels].sum())
    return (positive_rank_sum - p * (p + 1) / 2.0) / (p * n)


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    y = np.asarray(labels, dtype=bool)
    q = np.clip(np.asarray(probabilities, dtype=np.float64), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(np.mean(np.where(y, -np.log(q), -np.log(1.0 - q))))


def _discount(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n) + 2.0)


def ndcg_binary_at_k(ranked, relevant: set, k: int) -> float:
    if not relevant:
        raise ValueError("ndcg: no relevant items")
    top = list(ranked)[:k]
    idcg = float(_discount(min(len(relevant), k)).sum())
    d = _discount(len(top))
    dcg = float(sum(d[i] for i, item in enumerate(top) if item in relevant))
    return dcg / idcg


def precision_at_k(ranked, relevant: set, k: int) -> float:
    top = list(ranked)[:k]
    return sum(1 for item in top if item in relevant) / k


def recall_at_k(ranked, relevant: set, k: int) -> float:
    top = list(ranked)[:k]
    return sum(1 for item in top if item in relevant) / len(relevant)


def self_check() -> None:
    """The hand cases of lethe_ml::metrics' unit tests."""
    close = lambda a, b, tol=1e-9: abs(a - b) < tol  # noqa: E731
    assert close(auc_roc([False, True], [0.1, 0.9]), 1.0)
    assert close(auc_roc([False, True], [0.9, 0.1]), 0.0)
    assert close(auc_roc([True, False, True], [0.3, 0.3, 0.3]), 0.5)
    assert close(auc_roc([True, False, True, False], [0.8, 0.8, 0.3, 0.1]), 0.625)
    assert close(log_loss([True, False], [0.8, 0.4]), 0.3669846, 1e-6)
    assert close(log_loss([True], [0.0]), 34.538776, 1e-5)
    assert close(ndcg_binary_at_k([1, 2, 3, 4], {1, 3, 5}, 3), 0.7039180, 1e-6)
    assert close(precision_at_k([1, 2, 3, 4], {1, 3, 5}, 3), 2 / 3)
    assert close(precision_at_k([5], {1, 3, 5}, 4), 0.25)
    assert close(recall_at_k([5], {1, 3, 5}, 4), 1 / 3)


# --------------------------------------------------------------------------------------------
# Engagement: LightGBM on the same folds.
# --------------------------------------------------------------------------------------------


def lightgbm_matched(gbm: dict, seed: int) -> dict:
    """LightGBM parameters equivalent to lethe-ml's GbmParams (XGBoost-style depth-wise trees)."""
    params = {
        "objective": "binary",
        "learning_rate": gbm["learning_rate"],
        "max_depth": gbm["max_depth"],
        # A depth-d tree has at most 2^d leaves: leaf-wise growth with this cap can reach every
        # tree a depth-wise learner can.
        "num_leaves": 2 ** gbm["max_depth"],
        "lambda_l2": gbm["l2"],
        "min_gain_to_split": gbm["gamma"],
        "min_sum_hessian_in_leaf": gbm["min_leaf_weight"],
        # forust-ml has no minimum row count per leaf; only the hessian minimum applies.
        "min_data_in_leaf": 0,
        "max_bin": max(2, min(int(gbm["nbins"]) - 1, 255)),
        "feature_fraction": gbm["colsample_bytree"],
        "boost_from_average": True,
        "num_threads": 1,
        "deterministic": True,
        "force_col_wise": True,
        "seed": seed,
        "verbose": -1,
    }
    if gbm["subsample"] < 1.0:
        params.update({"bagging_fraction": gbm["subsample"], "bagging_freq": 1})
    return params


def lightgbm_defaults(seed: int) -> dict:
    return {
        "objective": "binary",
        "num_threads": 1,
        "deterministic": True,
        "force_col_wise": True,
        "seed": seed,
        "verbose": -1,
    }


def warm_up() -> None:
    """One tiny untimed fit per library, so one-time costs (lazy loading, thread pools, BLAS
    configuration checks) do not land in the first timed fit."""
    import lightgbm as lgb
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import CosineRecommender

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(x, label=(x[:, 0] > 0) * 1.0), 5)
    m = sp.random(50, 40, density=0.2, format="csr", dtype=np.float32, random_state=0)
    AlternatingLeastSquares(factors=8, iterations=2, use_gpu=False, num_threads=1).fit(m, show_progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CosineRecommender(K=5, num_threads=1).fit(m, show_progress=False)


def fastest(repeats: int, train):
    """Runs `train` `repeats` times (at least once); returns its last result and the fastest time."""
    best, result = math.inf, None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = train()
        best = min(best, time.perf_counter() - start)
    return result, best


def run_lightgbm(entry: dict, params: dict, rounds: int, repeats: int) -> dict:
    import lightgbm as lgb

    frame = pd.read_csv(entry["path"])
    folds = frame["fold"].to_numpy()
    y = frame["label"].to_numpy().astype(bool)
    x = frame.drop(columns=["fold", "label"]).to_numpy(dtype=np.float64)
    out = {"auc": [], "log_loss": [], "train_s": []}
    for f in range(entry["folds"]):
        train, test = folds != f, folds == f
        booster, seconds = fastest(
            repeats,
            lambda: lgb.train(params, lgb.Dataset(x[train], label=y[train].astype(np.float64)), num_boost_round=rounds),
        )
        p = booster.predict(x[test])
        out["auc"].append(auc_roc(y[test], p))
        out["log_loss"].append(log_loss(y[test], p))
        out["train_s"].append(seconds)
    return out


# --------------------------------------------------------------------------------------------
# Recommendation: implicit on the same split.
# --------------------------------------------------------------------------------------------


def rank_top_k(scores: np.ndarray, candidates: np.ndarray, k: int, positive_only: bool = False) -> list:
    """The k best candidate items: score descending, then item id ascending; non-finite dropped."""
    s = scores[candidates]
    keep = np.isfinite(s)
    if positive_only:
        keep &= s > 0
    items, s = candidates[keep], s[keep]
    order = np.lexsort((items, -s))
    return items[order[:k]].tolist()


def evaluate_scores(score_user, train: pd.DataFrame, test: pd.DataFrame, k: int, positive_only=False) -> dict:
    catalogue = np.unique(train["item"].to_numpy())
    seen = train.groupby("user")["item"].apply(set).to_dict()
    held = test.groupby("user")["item"].apply(set).to_dict()
    ndcg = precision = recall = 0.0
    for user in sorted(held):
        seen_u = seen.get(user, set())
        candidates = catalogue[~np.isin(catalogue, list(seen_u))]
        ranked = rank_top_k(score_user(user), candidates, k, positive_only)
        ndcg += ndcg_binary_at_k(ranked, held[user], k)
        precision += precision_at_k(ranked, held[user], k)
        recall += recall_at_k(ranked, held[user], k)
    n = len(held)
    return {"ndcg": ndcg / n, "precision": precision / n, "recall": recall / n, "users": n}


def run_recommenders(entry: dict, als: dict, knn: dict, seed: int, k: int, repeats: int) -> list:
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import CosineRecommender

    train = pd.read_csv(entry["train_path"])
    test = pd.read_csv(entry["test_path"])
    shape = (int(max(train["user"].max(), test["user"].max())) + 1, int(max(train["item"].max(), test["item"].max())) + 1)
    counts = sp.csr_matrix(
        (train["strength"].to_numpy(np.float32), (train["user"].to_numpy(), train["item"].to_numpy())), shape=shape
    )
    rows = []

    def als_row(name: str, matrix: sp.csr_matrix, alpha: float) -> None:
        def fit_als():
            model = AlternatingLeastSquares(
                factors=als["factors"],
                regularization=als["regularization"],
                alpha=alpha,
                iterations=als["iterations"],
                use_gpu=False,
                num_threads=1,
                random_state=seed,
                calculate_training_loss=False,
            )
            model.fit(matrix, show_progress=False)
            return model

        model, seconds = fastest(repeats, fit_als)
        u, v = np.asarray(model.user_factors), np.asarray(model.item_factors)
        r = evaluate_scores(lambda user: v @ u[user], train, test, k)
        rows.append({"model": name, "train_s": seconds, **r})

    # implicit's confidence is alpha * r (Hu et al.'s 1 + alpha * r minus the one); lethe-ml's is
    # 1 + alpha * r. The first row is implicit as documented, fed the same counts and alpha; the
    # second feeds it 1 + alpha * r with alpha = 1, i.e. lethe-ml's objective, isolating the solver.
    als_row("implicit ALS", counts, als["alpha"])
    lethe_confidence = counts.copy()
    lethe_confidence.data = (1.0 + als["alpha"] * lethe_confidence.data).astype(np.float32)
    als_row("implicit ALS, c = 1 + alpha r", lethe_confidence, 1.0)

    def train_cosine():
        cosine = CosineRecommender(K=knn["neighbours"], num_threads=1)
        with warnings.catch_warnings():  # implicit converts its own normalized matrix to CSR and says so
            warnings.simplefilter("ignore")
            cosine.fit(counts, show_progress=False)
        return cosine

    cosine, seconds = fastest(repeats, train_cosine)
    sim = cosine.similarity.tocsr()
    r = evaluate_scores(lambda user: np.asarray((counts[user] @ sim).todense()).ravel(), train, test, k, True)
    rows.append({"model": f"implicit cosine item-kNN (K={knn['neighbours']})", "train_s": seconds, **r})

    popularity = np.asarray((counts > 0).sum(axis=0), dtype=np.float64).ravel()
    r = evaluate_scores(lambda user: popularity, train, test, k)
    rows.append({"model": "popularity (train users per item)", "train_s": float("nan"), **r})
    return rows


# --------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------


def mean(v) -> float:
    return float(np.mean(v))


def sd(v) -> float:
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def fmt_s(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    self_check()
    import implicit
    import lightgbm

    warm_up()
    results = json.loads(Path(sys.argv[1]).read_text())
    seed, k, params = results["seed"], results["k"], results["params"]
    repeats = int(results.get("repeats", 1))
    gbm = params["gbm"]
    matched = lightgbm_matched(gbm, seed)
    print(f"lightgbm {lightgbm.__version__}, implicit {implicit.__version__}, numpy {np.__version__}")
    print(f"training times: fastest of {repeats} runs (both sides; Lethe logistic once), one thread, after an untimed warm-up")
    print(f"Lethe GBM params:      {json.dumps(gbm, sort_keys=True)}")
    print(f"LightGBM matched:      num_boost_round={gbm['iterations']} {json.dumps(matched, sort_keys=True)}")
    print(f"LightGBM defaults:     num_boost_round=100 {json.dumps(lightgbm_defaults(seed), sort_keys=True)}")
    print(f"Lethe / implicit ALS:  {json.dumps(params['als'], sort_keys=True)} (implicit: float32, CG solver, 1 thread)")
    print(f"Lethe item-kNN:        {json.dumps(params['knn'], sort_keys=True)}; implicit cosine K={params['knn']['neighbours']}")

    goals = []
    print("\n== Engagement (click) model: AUC and log loss, mean ± sd over stratified folds; training seconds per fold ==")
    header = f"{'dataset':<19} {'model':<30} {'AUC':>17} {'log loss':>9} {'train s/fold':>13}"
    print(header)
    print("-" * len(header))
    for entry in results["engagement"]:
        rows = [(m["model"], m) for m in entry["models"]]
        lgb_matched = run_lightgbm(entry, matched, gbm["iterations"], repeats)
        lgb_default = run_lightgbm(entry, lightgbm_defaults(seed), 100, repeats)
        rows.append(("LightGBM (Lethe's params)", lgb_matched))
        rows.append(("LightGBM (library defaults)", lgb_default))
        label = entry["key"]
        for name, m in rows:
            auc = f"{mean(m['auc']):.4f} ± {sd(m['auc']):.4f}"
            print(f"{label:<19} {name:<30} {auc:>17} {mean(m['log_loss']):>9.4f} {mean(m['train_s']):>13.3f}")
            label = ""
        if entry.get("oracle_auc"):
            o = entry["oracle_auc"]
            print(f"{'':<19} {'oracle (true probability)':<30} {f'{mean(o):.4f} ± {sd(o):.4f}':>17}")
        print(f"{'':<19} ({entry['rows']} rows, {entry['features']} features, {entry['positives']} positives, {entry['folds']} folds)")
        lethe = next(m for m in entry["models"] if m["model"] == "Lethe GBM")
        diffs = np.array(lethe["auc"]) - np.array(lgb_matched["auc"])
        time_ratio = mean(lethe["train_s"]) / mean(lgb_matched["train_s"])
        goals.append(
            f"{entry['key']}: Lethe GBM − LightGBM AUC = {mean(diffs):+.4f} (per-fold sd {sd(diffs):.4f}) "
            f"→ within 0.01: {verdict(mean(diffs) >= -0.01)}; training time ×{time_ratio:.2f} → "
            f"{verdict(time_ratio <= 1.0)}"
        )

    print(f"\n== Recommendation: NDCG@{k} and precision@{k} on held-out items; training seconds ==")
    header = f"{'dataset':<14} {'model':<36} {'NDCG@' + str(k):>9} {'prec@' + str(k):>9} {'train s':>9}"
    print(header)
    print("-" * len(header))
    for entry in results["recommend"]:
        rows = [(m["model"], m) for m in entry["models"]]
        for r in run_recommenders(entry, params["als"], params["knn"], seed, k, repeats):
            rows.append((r["model"], r))
        label = "synthetic"
        for name, m in rows:
            print(f"{label:<14} {name:<36} {m['ndcg']:>9.4f} {m['precision']:>9.4f} {fmt_s(m['train_s']):>9}")
            label = ""
        print(f"{'':<14} ({entry['title']}; {entry['train_interactions']} train interactions, {entry['test_users']} test users)")
        by_name = dict(rows)
        ref = by_name["implicit ALS"]
        for lethe_name in ("Lethe ALS", "Lethe item-kNN"):
            m = by_name[lethe_name]
            ratio = m["ndcg"] / ref["ndcg"]
            time_ratio = m["train_s"] / ref["train_s"]
            goals.append(
                f"{entry['key']}: {lethe_name} NDCG@{k} = {ratio:.1%} of implicit ALS "
                f"→ within 5 %: {verdict(ratio >= 0.95)}; training time ×{time_ratio:.2f} → {verdict(time_ratio <= 1.0)}"
            )

    print("\n== Goals (AUC within 0.01 of LightGBM, NDCG@10 within 5 % of implicit ALS, training time no worse) ==")
    for g in goals:
        print(g)
    return 0


if __name__ == "__main__":
    sys.exit(main())
