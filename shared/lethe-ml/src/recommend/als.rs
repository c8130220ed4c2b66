//! Implicit-feedback matrix factorization by alternating least squares (Hu, Koren & Volinsky 2008):
//! preference `p_ui = 1` where a user interacted, confidence `c_ui = 1 + α·r_ui`, and per user the
//! weighted ridge regression `(YᵀY + Yᵀ(C_u − I)Y + λI) x_u = YᵀC_u p_u` against the item factors `Y`
//! (likewise per item against the user factors).
//!
//! # Solver
//!
//! With [`AlsParams::cg_steps`] above zero (3 by default) each half-sweep solves those systems
//! approximately by conjugate gradients, as Takács, Pilászy & Tikk (2011, "Applications of the conjugate
//! gradient method for implicit feedback collaborative filtering") propose and Python's `implicit` does:
//! `YᵀY + λI` is formed once per half-sweep, and every row then takes `cg_steps` CG steps warm-started
//! from its current factors. The row's matrix is never formed: its product with a vector is
//! `(YᵀY + λI)v + Σ_{i∈I_u} (c_ui − 1)(y_i·v) y_i`, so a step costs O(|I_u|·f + f²) instead of the
//! O(|I_u|·f² + f³) of building and factorizing the matrix. Training runs in f32 like `implicit`; the
//! factors are stored row-major with each row padded by zeros to a multiple of 8 (the padding stays zero
//! through the solver), so every loop runs over whole lanes, and the `(YᵀY + λI)v` products of
//! a block of rows are one small matrix product computed in register tiles.
//!
//! `cg_steps = 0` selects the exact solve instead: the row's matrix formed and factorized by Cholesky,
//! in f64 (kept for tests and comparison; some 60 times slower at 100 factors). Folding a new history
//! in ([`AlsModel::recommend_for_history`]) always solves exactly, like `implicit`'s `recalculate_user`.
//!
//! Defaults follow `implicit` (`AlternatingLeastSquares`: 100 factors, λ = 0.01, α = 1, 15 iterations,
//! 3 CG steps, factors initialized uniformly in [0, 0.01)) so results can be compared.
//!
//! Determinism: every sum runs in a fixed order (lane `l` of an 8-lane accumulator takes the elements
//! `≡ l mod 8`, the lanes are then added in order; matrix products sum over their inner index in
//! order), in one thread and without fused multiply-add, so a seed gives bit-identical factors on every
//! machine, whatever its vector width.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

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
    /// Conjugate-gradient steps per row and half-sweep, warm-started from the row's current factors;
    /// 0 solves every row exactly by Cholesky instead (much slower). Default 3, as in `implicit`; parameters
    /// serialized before this field existed read as 3 too.
    #[serde(default = "default_cg_steps")]
    pub cg_steps: usize,
}

const fn default_cg_steps() -> usize {
    3
}

impl Default for AlsParams {
    fn default() -> Self {
        Self { factors: 100, regularization: 0.01, alpha: 1.0, iterations: 15, cg_steps: default_cg_steps() }
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

// --- Exact solve (cg_steps = 0, fold-in) ----------------------------------------------------------

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

/// Recomputes every row of `target` exactly from the fixed `other` factors.
fn sweep(rows: &[Vec<(usize, f64)>], other: &Array2<f64>, target: &mut Array2<f64>, params: &AlsParams) -> Result<()> {
    let g = gram(other.view(), params.regularization);
    for (u, row) in rows.iter().enumerate() {
        let x = solve_row(row, other.view(), &g, params.alpha)?;
        target.row_mut(u).assign(&x);
    }
    Ok(())
}

// --- Conjugate gradients ---------------------------------------------------------------------------

/// Width of the fixed-order accumulators, and the multiple that packed rows are padded to. Eight f32
/// fill one AVX register or two SSE registers; the results do not depend on which the compiler uses.
const LANES: usize = 8;

/// Rows of the register tiles of [`packed_gram`] (a 4 × [`LANES`] block of accumulators).
const TILE_ROWS: usize = 4;

/// Rows solved together: each CG step multiplies all their search directions by `YᵀY + λI` in one pass.
const BLOCK_ROWS: usize = 64;

/// Rows of `Y` per pass when forming `YᵀY`, so that a pass stays in cache.
const GRAM_ROWS: usize = 256;

/// The float type of the CG solver: f32 in training (as `implicit`), f64 where tests compare it with the
/// exact solve.
trait Real:
    Copy
    + Default
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    /// A squared residual below this ends a row's solve (`implicit` uses the same bound).
    const TINY: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn is_finite(self) -> bool;
}

impl Real for f32 {
    const TINY: Self = 1e-20;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn is_finite(self) -> bool {
        self.is_finite()
    }
}

impl Real for f64 {
    const TINY: Self = 1e-20;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn is_finite(self) -> bool {
        self.is_finite()
    }
}

/// Adds the lanes in order. (A sequential sum, unlike a pairwise tree, lets the compiler keep the lanes in
/// full-width registers.)
#[inline]
fn lane_total<T: Real>(lanes: [T; LANES]) -> T {
    lanes.into_iter().fold(T::default(), |sum, v| sum + v)
}

/// `a · b` for slices of whole lanes: lane `l` sums the products at `l, l + LANES, …` in order, then
/// [`lane_total`].
#[inline]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    debug_assert!(a.len() == b.len() && a.chunks_exact(LANES).remainder().is_empty());
    let mut acc = [T::default(); LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    lane_total(acc)
}

/// `y += a·x`.
#[inline]
fn axpy<T: Real>(a: T, x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `acc[r][j] += s[r]·v[j]`: one rank-1 update of a register tile.
#[inline(always)]
fn tile_update<T: Real, const R: usize, const C: usize>(acc: &mut [[T; C]; R], s: [T; R], v: &[T; C]) {
    for (acc, s) in acc.iter_mut().zip(s) {
        for (a, &v) in acc.iter_mut().zip(v) {
            *a += s * v;
        }
    }
}

/// Factors row-major, each row padded with zeros to `width`, a multiple of [`LANES`].
#[derive(Debug, Clone, PartialEq)]
struct Packed<T> {
    width: usize,
    data: Vec<T>,
}

impl<T: Real> Packed<T> {
    fn from_array(a: &Array2<f64>) -> Self {
        let width = a.ncols().div_ceil(LANES) * LANES;
        let mut data = vec![T::default(); a.nrows() * width];
        for (row, src) in data.chunks_exact_mut(width).zip(a.rows()) {
            for (x, &v) in row.iter_mut().zip(src) {
                *x = T::from_f64(v);
            }
        }
        Self { width, data }
    }

    fn to_array(&self, factors: usize) -> Array2<f64> {
        let rows = self.data.len() / self.width;
        Array2::from_shape_fn((rows, factors), |(i, j)| self.data[i * self.width + j].to_f64())
    }

    fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.width..(i + 1) * self.width]
    }
}

/// One side's interactions as compressed rows: per entry the other side's index, `c = 1 + α·r` and
/// `c − 1 = α·r`.
#[derive(Debug)]
struct Rows<T> {
    start: Vec<usize>,
    entries: Vec<(usize, T, T)>,
}

impl<T: Real> Rows<T> {
    fn new(rows: &[Vec<(usize, f64)>], alpha: f64) -> Self {
        let mut start = Vec::with_capacity(rows.len() + 1);
        let mut entries = Vec::with_capacity(rows.iter().map(Vec::len).sum());
        start.push(0);
        for row in rows {
            entries.extend(row.iter().map(|&(j, r)| (j, T::from_f64(1.0 + alpha * r), T::from_f64(alpha * r))));
            start.push(entries.len());
        }
        Self { start, entries }
    }

    fn row(&self, u: usize) -> &[(usize, T, T)] {
        &self.entries[self.start[u]..self.start[u + 1]]
    }
}

/// `MᵀM + λI` for the packed rows of `m`, row-major `width × width` (zero in the padding but for the
/// diagonal). Each entry sums over the rows of `m` in order; the upper triangle is computed in
/// [`TILE_ROWS`] × [`LANES`] register tiles and mirrored.
fn packed_gram<T: Real>(m: &Packed<T>, lambda: T) -> Vec<T> {
    let w = m.width;
    let mut g = vec![T::default(); w * w];
    for block in m.data.chunks(GRAM_ROWS * w) {
        for a0 in (0..w).step_by(TILE_ROWS) {
            for b0 in (a0 - a0 % LANES..w).step_by(LANES) {
                let mut acc = [[T::default(); LANES]; TILE_ROWS];
                for (r, acc) in acc.iter_mut().enumerate() {
                    acc.copy_from_slice(&g[(a0 + r) * w + b0..][..LANES]);
                }
                for y in block.chunks_exact(w) {
                    let s: [T; TILE_ROWS] = y[a0..a0 + TILE_ROWS].try_into().expect("tile rows");
                    let v: &[T; LANES] = y[b0..b0 + LANES].try_into().expect("lanes");
                    tile_update(&mut acc, s, v);
                }
                for (r, acc) in acc.iter().enumerate() {
                    g[(a0 + r) * w + b0..][..LANES].copy_from_slice(acc);
                }
            }
        }
    }
    for a in 0..w {
        for b in 0..a {
            g[a * w + b] = g[b * w + a];
        }
        g[a * w + a] += lambda;
    }
    g
}

/// Columns `b0..b0 + C` of `R` rows of `v · G` (each row of `v` has `w` entries; `G` is `w × w`).
#[inline(always)]
fn product_tile<T: Real, const R: usize, const C: usize>(g: &[T], w: usize, b0: usize, v: &[T], out: &mut [T]) {
    let rows: [&[T]; R] = std::array::from_fn(|r| &v[r * w..(r + 1) * w]);
    let mut acc = [[T::default(); C]; R];
    for (gk, k) in g.chunks_exact(w).zip(0..w) {
        let gk: &[T; C] = gk[b0..b0 + C].try_into().expect("tile columns");
        tile_update(&mut acc, std::array::from_fn(|r| rows[r][k]), gk);
    }
    for (r, acc) in acc.iter().enumerate() {
        out[r * w + b0..r * w + b0 + C].copy_from_slice(acc);
    }
}

/// Rows of the register tiles of [`gram_times`] (2 × 24 accumulators in twelve SSE registers measured
/// fastest on x86-64's baseline SSE2, ahead of 4 × 8, 3 × 16 and 1 × 32).
const PRODUCT_ROWS: usize = 2;
/// Columns of the register tiles of [`gram_times`]; a last strip narrower than this is [`LANES`] wide.
const PRODUCT_COLUMNS: usize = 3 * LANES;

/// Columns `b0..b0 + C` of `out_u = G·v_u` for every row of `v`.
#[inline(always)]
fn gram_times_strip<T: Real, const C: usize>(g: &[T], w: usize, b0: usize, v: &[T], out: &mut [T]) {
    for (v, out) in v.chunks(PRODUCT_ROWS * w).zip(out.chunks_mut(PRODUCT_ROWS * w)) {
        if v.len() == PRODUCT_ROWS * w {
            product_tile::<T, PRODUCT_ROWS, C>(g, w, b0, v, out);
        } else {
            for (v, out) in v.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
                product_tile::<T, 1, C>(g, w, b0, v, out);
            }
        }
    }
}

/// `out_u = G·v_u` for every row `v_u` of `v` (`G` symmetric, `w × w`): each entry sums over `k` in order.
fn gram_times<T: Real>(g: &[T], w: usize, v: &[T], out: &mut [T]) {
    let mut b0 = 0;
    while b0 + PRODUCT_COLUMNS <= w {
        gram_times_strip::<T, PRODUCT_COLUMNS>(g, w, b0, v, out);
        b0 += PRODUCT_COLUMNS;
    }
    while b0 < w {
        gram_times_strip::<T, LANES>(g, w, b0, v, out);
        b0 += LANES;
    }
}

/// Scratch of [`cg_sweep`]: residuals, search directions, their products with the row matrices and the
/// squared residual norms of a block of rows, and the coefficients of one row's sparse part.
#[derive(Debug)]
struct CgScratch<T> {
    r: Vec<T>,
    p: Vec<T>,
    ap: Vec<T>,
    rs: Vec<T>,
    coefficients: Vec<T>,
}

impl<T: Real> CgScratch<T> {
    fn new(width: usize) -> Self {
        let zeros = vec![T::default(); BLOCK_ROWS * width];
        Self {
            r: zeros.clone(),
            p: zeros.clone(),
            ap: zeros,
            rs: vec![T::default(); BLOCK_ROWS],
            coefficients: Vec::new(),
        }
    }
}

/// The lane sums of `y_r · v` for `R` rows at once, sharing the loads of `v` (lane `l` of row `r` sums the
/// products at `l, l + LANES, …` in order, as in [`dot`]). Not inlined, so the compiler vectorizes it along
/// the lanes rather than across the rows' final sums.
#[inline(never)]
fn dot_lanes<T: Real, const R: usize>(ys: [&[T]; R], v: &[T]) -> [[T; LANES]; R] {
    let mut acc = [[T::default(); LANES]; R];
    for (k, vk) in v.chunks_exact(LANES).enumerate() {
        for (acc, y) in acc.iter_mut().zip(ys) {
            for ((s, &a), &b) in acc.iter_mut().zip(&y[k * LANES..(k + 1) * LANES]).zip(vk) {
                *s += a * b;
            }
        }
    }
    acc
}

/// Columns of `out` kept in registers at a time by [`add_rows`].
const STRIP: usize = 4 * LANES;

/// `out[start..start + S] += Σ_e coefficient_e · y_e[start..start + S]`, adding the entries in order.
#[inline(always)]
fn add_rows_strip<T: Real, const S: usize>(
    entries: &[(usize, T, T)],
    coefficients: &[T],
    other: &Packed<T>,
    start: usize,
    out: &mut [T],
) {
    let out: &mut [T; S] = (&mut out[start..start + S]).try_into().expect("strip");
    let mut acc = *out;
    for (&(i, _, _), &c) in entries.iter().zip(coefficients) {
        let y: &[T; S] = other.row(i)[start..start + S].try_into().expect("strip");
        for (a, &y) in acc.iter_mut().zip(y) {
            *a += c * y;
        }
    }
    *out = acc;
}

/// `out += Σ_e coefficient_e · y_e` over a row's entries, each element adding the entries in order (as
/// repeated `axpy` would), a strip of columns at a time so the strip stays in registers.
fn add_rows<T: Real>(entries: &[(usize, T, T)], coefficients: &[T], other: &Packed<T>, out: &mut [T]) {
    let w = out.len();
    let mut start = 0;
    while start + STRIP <= w {
        add_rows_strip::<T, STRIP>(entries, coefficients, other, start, out);
        start += STRIP;
    }
    while start < w {
        add_rows_strip::<T, LANES>(entries, coefficients, other, start, out);
        start += LANES;
    }
}

/// `out += Σ_i coefficient(c_i, c_i − 1, y_i·v)·y_i` over a row's entries: every dot product first (four
/// at a time), then the sum of the scaled rows.
#[inline]
fn add_sparse<T: Real>(
    entries: &[(usize, T, T)],
    other: &Packed<T>,
    v: &[T],
    coefficient: impl Fn(T, T, T) -> T,
    coefficients: &mut Vec<T>,
    out: &mut [T],
) {
    coefficients.clear();
    let mut quads = entries.chunks_exact(4);
    for quad in &mut quads {
        let lanes = dot_lanes::<T, 4>(std::array::from_fn(|r| other.row(quad[r].0)), v);
        coefficients.extend(quad.iter().zip(lanes).map(|(&(_, c, c1), d)| coefficient(c, c1, lane_total(d))));
    }
    for &(i, c, c1) in quads.remainder() {
        coefficients.push(coefficient(c, c1, dot(other.row(i), v)));
    }
    add_rows(entries, coefficients, other, out);
}

/// Moves every row `x_u` of `target` towards the solution of `A_u x_u = b_u` by `steps` CG steps from its
/// current value, where `A_u = YᵀY + λI + Σ_{i∈I_u} (c_ui − 1) y_i y_iᵀ` and `b_u = Σ_{i∈I_u} c_ui y_i`
/// for the fixed factors `Y = other`. A row without interactions becomes zero (its exact solution).
/// Rows are taken [`BLOCK_ROWS`] at a time so their `(YᵀY + λI)·v` products form one matrix product;
/// every row's arithmetic is the same whatever its block.
fn cg_sweep<T: Real>(rows: &Rows<T>, other: &Packed<T>, target: &mut Packed<T>, lambda: T, steps: usize) {
    let w = other.width;
    let g = packed_gram(other, lambda);
    let mut scratch = CgScratch::new(w);
    for (block, x) in target.data.chunks_mut(BLOCK_ROWS * w).enumerate() {
        let n = x.len() / w;
        let first = block * BLOCK_ROWS;
        let CgScratch { r, p, ap, rs, coefficients } = &mut scratch;
        let (r, p, ap, rs) = (&mut r[..n * w], &mut p[..n * w], &mut ap[..n * w], &mut rs[..n]);

        // r = b − A x = Σ_i (c_i − (c_i − 1)(y_i·x)) y_i − (YᵀY + λI) x
        gram_times(&g, w, x, ap);
        let per_row = x.chunks_exact_mut(w).zip(r.chunks_exact_mut(w)).zip(ap.chunks_exact(w)).zip(rs.iter_mut());
        for (u, (((x, r), gx), rs)) in per_row.enumerate() {
            let entries = rows.row(first + u);
            if entries.is_empty() {
                x.fill(T::default());
                r.fill(T::default());
                *rs = T::default();
                continue;
            }
            for (r, &gx) in r.iter_mut().zip(gx) {
                *r = -gx;
            }
            add_sparse(entries, other, x, |c, c1, yx| c - c1 * yx, coefficients, r);
            *rs = dot(r, r);
        }
        p.copy_from_slice(r);

        for step in 0..steps {
            gram_times(&g, w, p, ap);
            let per_row = x
                .chunks_exact_mut(w)
                .zip(r.chunks_exact_mut(w))
                .zip(p.chunks_exact_mut(w))
                .zip(ap.chunks_exact_mut(w))
                .zip(rs.iter_mut());
            for (u, ((((x, r), p), ap), rs)) in per_row.enumerate() {
                let rs_old = *rs;
                if !rs_old.is_finite() || rs_old < T::TINY {
                    continue;
                }
                // ap = A p = (YᵀY + λI) p + Σ_i (c_i − 1)(y_i·p) y_i
                add_sparse(rows.row(first + u), other, p, |_, c1, yp| c1 * yp, coefficients, ap);
                let step_size = rs_old / dot(p, ap);
                axpy(step_size, p, x);
                axpy(-step_size, ap, r);
                let rs_new = dot(r, r);
                *rs = rs_new;
                if step + 1 < steps && rs_new >= T::TINY {
                    let beta = rs_new / rs_old;
                    for (p, &r) in p.iter_mut().zip(&*r) {
                        *p = r + beta * *p;
                    }
                }
            }
        }
    }
}

/// The CG training loop in `T`, from the initial factors; returns (user factors, item factors).
fn train_cg<T: Real>(
    user_rows: &[Vec<(usize, f64)>],
    item_rows: &[Vec<(usize, f64)>],
    user_init: &Array2<f64>,
    item_init: &Array2<f64>,
    params: &AlsParams,
) -> Result<(Array2<f64>, Array2<f64>)> {
    let (by_user, by_item) = (Rows::<T>::new(user_rows, params.alpha), Rows::<T>::new(item_rows, params.alpha));
    let mut users = Packed::<T>::from_array(user_init);
    let mut items = Packed::<T>::from_array(item_init);
    let lambda = T::from_f64(params.regularization);
    for _ in 0..params.iterations {
        cg_sweep(&by_user, &items, &mut users, lambda, params.cg_steps);
        cg_sweep(&by_item, &users, &mut items, lambda, params.cg_steps);
    }
    if !users.data.iter().chain(&items.data).all(|v| v.is_finite()) {
        return Err(MlError::Numerical { what: "als conjugate gradient" });
    }
    Ok((users.to_array(params.factors), items.to_array(params.factors)))
}

impl AlsModel {
    /// Factorizes the interactions; `seed` draws the initial factors.
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] without interactions, [`MlError::InvalidParameter`] for zero factors or
    /// iterations, a non-positive λ or a negative α, [`MlError::Numerical`] if a solve fails or the
    /// factors overflow.
    pub fn train(interactions: &Interactions, params: &AlsParams, seed: u64) -> Result<Self> {
        Self::fit::<f32>(interactions, params, seed)
    }

    /// [`AlsModel::train`] with the CG solver in `T` (the exact solve is in f64 whatever `T`).
    fn fit<T: Real>(interactions: &Interactions, params: &AlsParams, seed: u64) -> Result<Self> {
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
        if params.cg_steps == 0 {
            for _ in 0..params.iterations {
                sweep(&user_rows, &item_factors, &mut user_factors, params)?;
                sweep(&item_rows, &user_factors, &mut item_factors, params)?;
            }
        } else {
            (user_factors, item_factors) = train_cg::<T>(&user_rows, &item_rows, &user_factors, &item_factors, params)?;
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
    use std::collections::BTreeMap;

    use ndarray::array;
    use rand::seq::SliceRandom as _;

    use super::*;
    use crate::recommend::{evaluate_at_k, Popularity, PopularityParams};

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

    /// One CG half-sweep in `T` of the rows `rows` (starting from `x0`) against the factors `y`.
    fn cg_rows<T: Real>(
        rows: &[Vec<(usize, f64)>],
        y: &Array2<f64>,
        x0: &Array2<f64>,
        lambda: f64,
        alpha: f64,
        steps: usize,
    ) -> Packed<T> {
        let mut target = Packed::<T>::from_array(x0);
        cg_sweep(&Rows::new(rows, alpha), &Packed::from_array(y), &mut target, T::from_f64(lambda), steps);
        for row in target.data.chunks_exact(target.width) {
            assert!(row[x0.ncols()..].iter().all(|&v| v == T::default()), "the padding stays zero");
        }
        target
    }

    #[test]
    fn cg_hand_cases() {
        // One factor, as in solve_row_matches_normal_equations: A = 6.5, b = 2. In one dimension the first
        // step is exact, from any start.
        let y = array![[1.0], [2.0]];
        let x0 = array![[0.003]];
        let x = cg_rows::<f64>(&[vec![(0, 1.0)]], &y, &x0, 0.5, 1.0, 1).to_array(1);
        assert!((x[[0, 0]] - 2.0 / 6.5).abs() < 1e-12, "{x}");
        let x = cg_rows::<f32>(&[vec![(0, 1.0)]], &y, &x0, 0.5, 1.0, 1).to_array(1);
        assert!((x[[0, 0]] - 2.0 / 6.5).abs() < 1e-6, "{x}");

        // Two factors: Y = [[1, 0], [0, 1], [1, 1]], λ = 1, α = 1, the user has item 2 once (c = 2).
        // YᵀY + λI = [[3, 1], [1, 3]], plus (c − 1)·y₂y₂ᵀ = [[1, 1], [1, 1]]: A = [[4, 2], [2, 4]];
        // b = c·y₂ = [2, 2], so x = [1/3, 1/3]. CG is exact after two steps (the dimension), not after one.
        let y = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let row = vec![vec![(2, 1.0)]];
        let exact = solve_row(&row[0], y.view(), &gram(y.view(), 1.0), 1.0).unwrap();
        assert!(exact.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-12), "{exact}");
        let x0 = array![[0.01, 0.005]];
        let one = cg_rows::<f64>(&row, &y, &x0, 1.0, 1.0, 1).to_array(2);
        assert!((one[[0, 0]] - 1.0 / 3.0).abs() > 1e-4, "{one}");
        let two = cg_rows::<f64>(&row, &y, &x0, 1.0, 1.0, 2).to_array(2);
        assert!(two.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-12), "{two}");
        let two = cg_rows::<f32>(&row, &y, &x0, 1.0, 1.0, 2).to_array(2);
        assert!(two.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-6), "{two}");
    }

    #[test]
    fn cg_converges_to_the_exact_solve() {
        // 5 factors, 9 items with factors in [−0.5, 0.5), four rows: a few items, one item, none, all nine
        // with strengths 1 to 9.
        let mut rng = seeded_rng(7);
        let y = Array2::from_shape_simple_fn((9, 5), || rng.gen::<f64>() - 0.5);
        let x0 = Array2::from_shape_simple_fn((4, 5), || rng.gen::<f64>() * 0.01);
        let rows: Vec<Vec<(usize, f64)>> = vec![
            vec![(0, 1.0), (3, 2.0), (4, 1.0)],
            vec![(1, 5.0)],
            vec![],
            (0..9).map(|i| (i, 1.0 + i as f64)).collect(),
        ];
        let (lambda, alpha) = (0.1, 2.0);
        let g = gram(y.view(), lambda);
        let exact: Vec<Array1<f64>> = rows.iter().map(|r| solve_row(r, y.view(), &g, alpha).unwrap()).collect();
        let error = |x: Array2<f64>| {
            let mut worst = 0.0_f64;
            for (u, e) in exact.iter().enumerate() {
                for (a, b) in x.row(u).iter().zip(e) {
                    worst = worst.max((a - b).abs());
                }
            }
            worst
        };
        let initial = error(x0.clone());
        let errors: Vec<f64> = [1, 3, 30]
            .into_iter()
            .map(|steps| error(cg_rows::<f64>(&rows, &y, &x0, lambda, alpha, steps).to_array(5)))
            .collect();
        assert!(errors[0] < initial && errors[1] < errors[0], "{initial} {errors:?}");
        assert!(errors[2] < 1e-6, "{errors:?}");
        let f32_error = error(cg_rows::<f32>(&rows, &y, &x0, lambda, alpha, 30).to_array(5));
        assert!(f32_error < 1e-4, "{f32_error}");
        // The row without interactions is exactly zero.
        assert!(cg_rows::<f32>(&rows, &y, &x0, lambda, alpha, 3).row(2).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn cg_rows_do_not_depend_on_their_block() {
        // 70 rows span two blocks and end in a partial register tile; each row alone gives the same bits.
        let mut rng = seeded_rng(3);
        let y = Array2::from_shape_simple_fn((30, 11), || rng.gen::<f64>());
        let x0 = Array2::from_shape_simple_fn((70, 11), || rng.gen::<f64>() * 0.01);
        let rows: Vec<Vec<(usize, f64)>> = (0..70)
            .map(|u| (0..30).filter(|i| (u * 7 + i * 3) % 5 == 0).map(|i| (i, 1.0 + (i % 4) as f64)).collect())
            .collect();
        let all = cg_rows::<f32>(&rows, &y, &x0, 0.05, 1.5, 3);
        for (u, row) in rows.iter().enumerate() {
            let alone = cg_rows::<f32>(
                std::slice::from_ref(row),
                &y,
                &x0.row(u).insert_axis(ndarray::Axis(0)).to_owned(),
                0.05,
                1.5,
                3,
            );
            assert_eq!(alone.row(0), all.row(u), "row {u}");
        }
    }

    /// 90 users in 3 taste groups and 36 items in 3 matching categories of 12: every user has 8 random
    /// items of their category (strength 1 to 3) and one random item of any; 2 per user are held out.
    /// Every item is about equally popular, so popularity ranks little better than chance.
    fn planted(seed: u64) -> (Interactions, Interactions) {
        let mut rng = seeded_rng(seed);
        let mut triples = Vec::new();
        for u in 0..90u32 {
            let group = u % 3;
            let mut own: Vec<u32> = (0..12).map(|i| group * 12 + i).collect();
            own.shuffle(&mut rng);
            for &i in &own[..8] {
                triples.push((UserId(u), ItemId(i), f64::from(rng.gen_range(1..=3u8))));
            }
            triples.push((UserId(u), ItemId(rng.gen_range(0..36)), 1.0));
        }
        Interactions::from_triples(&triples).unwrap().split_holdout(2, seed ^ 1).unwrap()
    }

    fn small_params(cg_steps: usize) -> AlsParams {
        AlsParams { factors: 6, regularization: 0.1, alpha: 2.0, iterations: 10, cg_steps }
    }

    #[test]
    fn als_finds_the_planted_groups() {
        let (train, test) = planted(11);
        let popularity = Popularity::train(&train, &BTreeMap::new(), &PopularityParams::default()).unwrap();
        let pop = evaluate_at_k(&popularity, &train, &test, 10).unwrap();
        for cg_steps in [3, 0] {
            let als = AlsModel::train(&train, &small_params(cg_steps), 5).unwrap();
            let r = evaluate_at_k(&als, &train, &test, 10).unwrap();
            eprintln!("cg_steps {cg_steps}: NDCG@10 ALS {:.4}, popularity {:.4}", r.ndcg, pop.ndcg);
            assert_eq!(r.users, 90);
            assert!(r.ndcg > 0.5 && r.ndcg > 1.5 * pop.ndcg, "cg_steps {cg_steps}: ALS {r:?}, popularity {pop:?}");
        }
    }

    #[test]
    fn cg_training_with_enough_steps_matches_exact_training() {
        let (train, _) = planted(12);
        let exact = AlsModel::train(&train, &small_params(0), 9).unwrap();
        let cg = AlsModel::fit::<f64>(&train, &small_params(40), 9).unwrap();
        let diff = |a: &Array2<f64>, b: &Array2<f64>| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        let (du, di) = (diff(&exact.user_factors, &cg.user_factors), diff(&exact.item_factors, &cg.item_factors));
        eprintln!("largest difference: users {du:e}, items {di:e}");
        assert!(du < 1e-6 && di < 1e-6, "{du} {di}");
    }

    #[test]
    fn same_seed_same_factors() {
        let (train, _) = planted(13);
        for cg_steps in [3, 0] {
            let params = small_params(cg_steps);
            let a = AlsModel::train(&train, &params, 1).unwrap();
            assert_eq!(a, AlsModel::train(&train, &params, 1).unwrap());
            assert_ne!(a.user_factors, AlsModel::train(&train, &params, 2).unwrap().user_factors);
        }
    }

    #[test]
    fn params_without_cg_steps_read_as_the_default() {
        let old: AlsParams =
            serde_json::from_str(r#"{"factors":8,"regularization":0.1,"alpha":2.0,"iterations":4}"#).unwrap();
        assert_eq!(old, AlsParams { factors: 8, regularization: 0.1, alpha: 2.0, iterations: 4, cg_steps: 3 });
        assert_eq!(AlsParams::default().cg_steps, 3);
    }
}
