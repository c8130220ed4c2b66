//! Implicit-feedback matrix factorization by alternating least squares (Hu, Koren & Volinsky 2008):
//! preference `p_ui = 1` where a user interacted, confidence `c_ui = 1 + α·r_ui`, and per user the exact
//! solve `x_u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ YᵀC_u p_u` by Cholesky (likewise per item).
//!
//! Defaults follow Python's `implicit` (`AlternatingLeastSquares`: 100 factors, λ = 0.01, α = 1,
//! 15 iterations, factors initialized uniformly in [0, 0.01)) so results can be compared.
//! Sums run in plain loops in a fixed order, so a seed gives the same factors on every machine.

use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::{check_k, top_k, Interactions, ItemId, Scored, UserId, UserRecommender};
use crate::engagement::MODEL_FORMAT_VERSION;
use crate::error::{ensure_non_negative, ensure_positive, invalid, MlError, Result};
use crate::seeded_rng;

/// Hyperparameters of [`AlsModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsParams {
    /// Latent dimensions. Default 100.
    pub factors: usize,
    /// L2 penalty λ. Default 0.01.
    pub regularization: f64,
    /// Confidence scale α in `1 + α·r`. Default 1.0.
    pub alpha: f64,
    /// Alternating sweeps (users then items). Default 15.
    pub iterations: usize,
}

impl Default for AlsParams {
    fn default() -> Self {
        Self { factors: 100, regularization: 0.01, alpha: 1.0, iterations: 15 }
    }
}

/// A trained factorization: one vector per user and per item; score = `x_u · y_i`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsModel {
    format_version: u32,
    params: AlsParams,
    users: Vec<UserId>,
    items: Vec<ItemId>,
    user_factors: Array2<f64>,
    item_factors: Array2<f64>,
}

/// `MᵀM + λI` for the rows of `m`.
fn gram(m: ArrayView2<'_, f64>, lambda: f64) -> Array2<f64> {
    let f = m.ncols();
    let mut g = Array2::<f64>::zeros((f, f));
    for row in m.rows() {
        for a in 0..f {
            let ra = row[a];
            for b in 0..=a {
                g[[a, b]] += ra * row[b];
            }
        }
    }
    for a in 0..f {
        for b in 0..a {
            g[[b, a]] = g[[a, b]];
        }
        g[[a, a]] += lambda;
    }
    g
}

/// Solves `A x = b` for symmetric positive definite `A` by Cholesky (`A` is overwritten).
fn cholesky_solve(mut a: Array2<f64>, mut b: Array1<f64>) -> Result<Array1<f64>> {
    let n = b.len();
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= a[[j, k]] * a[[j, k]];
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(MlError::Numerical { what: "als cholesky" });
        }
        let d = d.sqrt();
        a[[j, j]] = d;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = s / d;
        }
    }
    // L y = b, then Lᵀ x = y.
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[[i, k]] * b[k];
        }
        b[i] = s / a[[i, i]];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[[k, i]] * b[k];
        }
        b[i] = s / a[[i, i]];
    }
    Ok(b)
}

/// One row's least-squares solve against the fixed factors `other` (with `gram = otherᵀother + λI`).
fn solve_row(row: &[(usize, f64)], other: ArrayView2<'_, f64>, gram: &Array2<f64>, alpha: f64) -> Result<Array1<f64>> {
    let f = other.ncols();
    if row.is_empty() {
        return Ok(Array1::zeros(f));
    }
    let mut a = gram.clone();
    let mut b = Array1::<f64>::zeros(f);
    for &(j, r) in row {
        let confidence = 1.0 + alpha * r;
        let y = other.row(j);
        for p in 0..f {
            let cy = (confidence - 1.0) * y[p];
            for q in 0..=p {
                a[[p, q]] += cy * y[q];
            }
            b[p] += confidence * y[p];
        }
    }
    for p in 0..f {
        for q in 0..p {
            a[[q, p]] = a[[p, q]];
        }
    }
    cholesky_solve(a, b)
}

/// Recomputes every row of `target` from the fixed `other` factors.
fn sweep(rows: &[Vec<(usize, f64)>], other: &Array2<f64>, target: &mut Array2<f64>, params: &AlsParams) -> Result<()> {
    let g = gram(other.view(), params.regularization);
    for (u, row) in rows.iter().enumerate() {
        let x = solve_row(row, other.view(), &g, params.alpha)?;
        target.row_mut(u).assign(&x);
    }
    Ok(())
}

impl AlsModel {
    /// Factorizes the interactions; `seed` draws the initial factors.
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] without interactions, [`MlError::InvalidParameter`] for zero factors or
    /// iterations, a non-positive λ or a negative α, [`MlError::Numerical`] if a solve fails.
    pub fn train(interactions: &Interactions, params: &AlsParams, seed: u64) -> Result<Self> {
        if params.factors == 0 {
            return Err(invalid("als.factors", "must be at least 1"));
        }
        if params.iterations == 0 {
            return Err(invalid("als.iterations", "must be at least 1"));
        }
        ensure_positive(params.regularization, "als.regularization")?;
        ensure_non_negative(params.alpha, "als.alpha")?;
        if interactions.is_empty() {
            return Err(MlError::EmptyInput { what: "interactions" });
        }
        let users: Vec<UserId> = interactions.users().collect();
        let items = interactions.items();
        let index = |item: ItemId| items.binary_search(&item).unwrap_or_default();
        let user_rows: Vec<Vec<(usize, f64)>> =
            interactions.iter().map(|(_, h)| h.iter().map(|&(i, v)| (index(i), v)).collect()).collect();
        let mut item_rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); items.len()];
        for (u, row) in user_rows.iter().enumerate() {
            for &(i, v) in row {
                item_rows[i].push((u, v));
            }
        }
        let mut rng = seeded_rng(seed);
        let mut init = |rows: usize| Array2::from_shape_simple_fn((rows, params.factors), || rng.gen::<f64>() * 0.01);
        let mut user_factors = init(users.len());
        let mut item_factors = init(items.len());
        for _ in 0..params.iterations {
            sweep(&user_rows, &item_factors, &mut user_factors, params)?;
            sweep(&item_rows, &user_factors, &mut item_factors, params)?;
        }
        Ok(Self {
            format_version: MODEL_FORMAT_VERSION,
            params: params.clone(),
            users,
            items,
            user_factors,
            item_factors,
        })
    }

    fn score_all(&self, x: ndarray::ArrayView1<'_, f64>) -> impl Iterator<Item = Scored> + '_ {
        let x = x.to_owned();
        self.items.iter().enumerate().map(move |(i, &item)| (item, x.dot(&self.item_factors.row(i))))
    }

    /// The best `k` items for a user seen in training.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `k = 0`, [`MlError::UnknownUser`].
    pub fn recommend(&self, user: UserId, k: usize, exclude: &[ItemId]) -> Result<Vec<Scored>> {
        check_k(k)?;
        let u = self.users.binary_search(&user).map_err(|_| MlError::UnknownUser(user))?;
        Ok(top_k(self.score_all(self.user_factors.row(u)), k, exclude))
    }

    /// The best `k` items for a history not seen in training (a new user, or one whose factors were
    /// dropped): solves the user's vector against the fixed item factors ("fold-in"), the same step as
    /// one user update of training. Unknown items in `history` are ignored.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `k = 0`, [`MlError::NonFinite`] or [`MlError::OutOfRange`]
    /// for a strength that is not a finite number above 0, [`MlError::Numerical`].
    pub fn recommend_for_history(
        &self,
        history: &[(ItemId, f64)],
        k: usize,
        exclude: &[ItemId],
    ) -> Result<Vec<Scored>> {
        check_k(k)?;
        let mut row = Vec::with_capacity(history.len());
        for &(item, r) in history {
            if !r.is_finite() {
                return Err(MlError::NonFinite { what: "interaction strength" });
            }
            if r <= 0.0 {
                return Err(MlError::OutOfRange { what: "interaction strength" });
            }
            if let Ok(i) = self.items.binary_search(&item) {
                row.push((i, r));
            }
        }
        if row.is_empty() {
            return Ok(Vec::new());
        }
        let g = gram(self.item_factors.view(), self.params.regularization);
        let x = solve_row(&row, self.item_factors.view(), &g, self.params.alpha)?;
        Ok(top_k(self.score_all(x.view()), k, exclude))
    }

    /// The user's latent vector, if the user was in training.
    #[must_use]
    pub fn user_factors(&self, user: UserId) -> Option<Vec<f64>> {
        self.users.binary_search(&user).ok().map(|u| self.user_factors.row(u).to_vec())
    }

    /// The item's latent vector, if the item was in training.
    #[must_use]
    pub fn item_factors(&self, item: ItemId) -> Option<Vec<f64>> {
        self.items.binary_search(&item).ok().map(|i| self.item_factors.row(i).to_vec())
    }
}

impl UserRecommender for AlsModel {
    /// Uses the trained user vector when there is one, else folds the history in.
    fn recommend_for_user(
        &self,
        user: UserId,
        history: &[(ItemId, f64)],
        k: usize,
        exclude: &[ItemId],
    ) -> Result<Vec<Scored>> {
        match self.recommend(user, k, exclude) {
            Err(MlError::UnknownUser(_)) => self.recommend_for_history(history, k, exclude),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cholesky_hand_case() {
        // A = [[4, 2], [2, 3]], b = [2, 1]: det = 8, A⁻¹ = [[3, −2], [−2, 4]] / 8
        // x = [3·2 − 2·1, −2·2 + 4·1] / 8 = [0.5, 0]
        let x = cholesky_solve(array![[4.0, 2.0], [2.0, 3.0]], array![2.0, 1.0]).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(cholesky_solve(array![[0.0, 0.0], [0.0, 1.0]], array![1.0, 1.0]).is_err());
    }

    #[test]
    fn solve_row_matches_normal_equations() {
        // One factor: Y = [1, 2]ᵀ, λ = 0.5, α = 1, user row {item0: r = 1}.
        // c = 2; A = YᵀY + λ + (c − 1)·1² = 5 + 0.5 + 1 = 6.5; b = c·1 = 2 → x = 2 / 6.5
        let y = array![[1.0], [2.0]];
        let g = gram(y.view(), 0.5);
        let x = solve_row(&[(0, 1.0)], y.view(), &g, 1.0).unwrap();
        assert!((x[0] - 2.0 / 6.5).abs() < 1e-12);
    }
}
