//! Small dense linear algebra on row-major `d × d` matrices stored in a `Vec<f64>`.
//!
//! Callers guarantee the lengths (`matrix.len() == d * d`, vectors of length `d`); every loop is written
//! with iterators over exact chunks so a wrong length gives a short result, never an out-of-bounds panic.

/// `x · y` with four independent accumulators, which lets the compiler vectorize the loop.
pub(crate) fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0_f64; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        acc[0] += a[0] * b[0];
        acc[1] += a[1] * b[1];
        acc[2] += a[2] * b[2];
        acc[3] += a[3] * b[3];
    }
    let tail: f64 = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `m · x` into `out` (cleared first).
pub(crate) fn mat_vec_into(m: &[f64], d: usize, x: &[f64], out: &mut Vec<f64>) {
    out.clear();
    out.extend(m.chunks_exact(d.max(1)).map(|row| dot(row, x)));
}

/// `m · x`.
pub(crate) fn mat_vec(m: &[f64], d: usize, x: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(d);
    mat_vec_into(m, d, x, &mut out);
    out
}

/// The `d × d` identity times `scale`.
pub(crate) fn scaled_identity(d: usize, scale: f64) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    for (i, row) in m.chunks_exact_mut(d.max(1)).enumerate() {
        if let Some(v) = row.get_mut(i) {
            *v = scale;
        }
    }
    m
}

/// The inverse of the symmetric positive definite matrix `a` by Cholesky factorization
/// (`A = L Lᵀ`, `A⁻¹ = L⁻ᵀ L⁻¹`), or `None` when `a` is not numerically positive definite.
pub(crate) fn cholesky_inverse(a: &[f64], d: usize) -> Option<Vec<f64>> {
    if d == 0 || a.len() != d * d {
        return None;
    }
    // Lower-triangular factor, row-major.
    let mut l = vec![0.0; d * d];
    for j in 0..d {
        let row_j = l.get(j * d..j * d + j)?;
        let pivot = a.get(j * d + j)? - dot(row_j, row_j);
        if !(pivot.is_finite() && pivot > 0.0) {
            return None;
        }
        let diag = pivot.sqrt();
        *l.get_mut(j * d + j)? = diag;
        for i in j + 1..d {
            let s = dot(l.get(i * d..i * d + j)?, l.get(j * d..j * d + j)?);
            *l.get_mut(i * d + j)? = (a.get(i * d + j)? - s) / diag;
        }
    }
    // L⁻¹ by forward substitution, column by column: L · col = e_c.
    let mut l_inv = vec![0.0; d * d];
    for c in 0..d {
        for i in c..d {
            let mut s = if i == c { 1.0 } else { 0.0 };
            for k in c..i {
                s -= l.get(i * d + k)? * l_inv.get(k * d + c)?;
            }
            *l_inv.get_mut(i * d + c)? = s / l.get(i * d + i)?;
        }
    }
    // A⁻¹ = L⁻ᵀ L⁻¹: (A⁻¹)ᵢⱼ = Σ_{k ≥ max(i, j)} L⁻¹ₖᵢ L⁻¹ₖⱼ, filled symmetrically.
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let mut s = 0.0;
            for k in j..d {
                s += l_inv.get(k * d + i)? * l_inv.get(k * d + j)?;
            }
            *inv.get_mut(i * d + j)? = s;
            *inv.get_mut(j * d + i)? = s;
        }
    }
    inv.iter().all(|v| v.is_finite()).then_some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_handles_remainders() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(dot(&x, &x), 91.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn cholesky_inverse_inverts_and_rejects_indefinite() {
        // A = [[4, 2], [2, 3]], det 8, A⁻¹ = [[3, -2], [-2, 4]] / 8.
        let inv = cholesky_inverse(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let expected = [0.375, -0.25, -0.25, 0.5];
        assert_eq!(inv.len(), 4);
        for (got, want) in inv.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        assert!(cholesky_inverse(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        assert!(cholesky_inverse(&[1.0, 0.0, 0.0], 2).is_none());
        assert!(cholesky_inverse(&[], 0).is_none());
        assert_eq!(scaled_identity(2, 3.0), vec![3.0, 0.0, 0.0, 3.0]);
        assert_eq!(mat_vec(&[1.0, 2.0, 3.0, 4.0], 2, &[1.0, 1.0]), vec![3.0, 7.0]);
    }
}
