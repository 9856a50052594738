//! Matrix products through the system's OpenBLAS (`libopenblas-dev`).
//!
//! Why not candle's own: measured here, candle 0.10's CPU matrix product reached 57–71
//! GFLOPS on the encoder's shapes (AVX-512 kernels on or off made no difference) where
//! OpenBLAS reached 200, and the products are nine tenths of the encoder's work.
//!
//! The one `unsafe` of the crate: a call into C with pointers whose extents the
//! wrapper checks first.

#![allow(unsafe_code)]

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

#[link(name = "openblas")]
unsafe extern "C" {
    // LAPACK (bundled in OpenBLAS), Fortran calling convention: every argument by
    // pointer, column-major.
    fn spotrf_(uplo: *const u8, n: *const i32, a: *mut f32, lda: *const i32, info: *mut i32);
    fn spotri_(uplo: *const u8, n: *const i32, a: *mut f32, lda: *const i32, info: *mut i32);

    fn cblas_sgemm(
        layout: i32,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f32,
        a: *const f32,
        lda: i32,
        b: *const f32,
        ldb: i32,
        beta: f32,
        c: *mut f32,
        ldc: i32,
    );
}

/// A row-major matrix in a slice: `rows × cols` with `stride` floats from one row's
/// start to the next (`stride ≥ cols`), as a column block of a wider matrix is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) stride: usize,
}

impl Layout {
    pub(crate) fn dense(rows: usize, cols: usize) -> Layout {
        Layout { rows, cols, stride: cols }
    }

    /// Floats the matrix spans from its first element: what its slice must hold.
    fn span(self) -> usize {
        if self.rows == 0 { 0 } else { (self.rows - 1) * self.stride + self.cols }
    }
}

/// `c = alpha · a · op(b) + beta · c`, with `op(b)` = `b` or `bᵀ` (`transpose_b`).
/// OpenBLAS runs a large product on its own threads, a small one on the caller's; it
/// may be called from several threads at once. Panics when the shapes disagree or a slice is shorter than its layout.
pub(crate) fn gemm(
    alpha: f32,
    (a, la): (&[f32], Layout),
    (b, lb): (&[f32], Layout),
    transpose_b: bool,
    beta: f32,
    (c, lc): (&mut [f32], Layout),
) {
    let (m, k) = (la.rows, la.cols);
    let (bk, n) = if transpose_b { (lb.cols, lb.rows) } else { (lb.rows, lb.cols) };
    assert_eq!(k, bk, "a's columns are op(b)'s rows");
    assert_eq!((lc.rows, lc.cols), (m, n), "c is m × n");
    for (slice, layout) in [(a.len(), la), (b.len(), lb), (c.len(), lc)] {
        assert!(layout.stride >= layout.cols, "a row's stride covers the row");
        assert!(slice >= layout.span(), "the slice holds the matrix");
    }
    if m == 0 || n == 0 {
        return;
    }
    let dim = |x: usize| i32::try_from(x).expect("matrix dimension fits in i32");
    // A leading dimension of 0 is refused by BLAS even where nothing is read.
    let lead = |x: usize| dim(x.max(1));
    // SAFETY: each slice holds at least the floats its layout spans (checked above), the
    // leading dimensions are the layouts' strides, and `c` is a unique borrow, so nothing
    // else reads or writes it while OpenBLAS does.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            NO_TRANS,
            if transpose_b { TRANS } else { NO_TRANS },
            dim(m),
            dim(n),
            dim(k),
            alpha,
            a.as_ptr(),
            lead(la.stride),
            b.as_ptr(),
            lead(lb.stride),
            beta,
            c.as_mut_ptr(),
            lead(lc.stride),
        );
    }
}

/// `c += a · wᵀ`, row-major: `a` is `m × k`, `w` is `n × k` (a linear layer's weight as
/// stored, out × in), `c` is `m × n`.
pub(crate) fn add_a_wt(m: usize, n: usize, k: usize, a: &[f32], w: &[f32], c: &mut [f32]) {
    assert_eq!(a.len(), m * k, "a is m × k");
    assert_eq!(w.len(), n * k, "w is n × k");
    assert_eq!(c.len(), m * n, "c is m × n");
    if m == 0 || n == 0 {
        return;
    }
    gemm(
        1.0,
        (a, Layout::dense(m, k)),
        (w, Layout::dense(n, k)),
        true,
        1.0,
        (c, Layout::dense(m, n)),
    );
}

/// Inverts the symmetric positive-definite `n × n` matrix in `a` in place (Cholesky
/// factorisation, then the inverse from the factor; LAPACK's `spotrf` and `spotri`).
/// Returns `Err(k)` when the leading minor of order `k` is not positive.
pub fn inverse_spd(a: &mut [f32], n: usize) -> Result<(), usize> {
    assert_eq!(a.len(), n * n, "a is n × n");
    if n == 0 {
        return Ok(());
    }
    let order = i32::try_from(n).expect("matrix dimension fits in i32");
    let mut info = 0i32;
    // Column-major 'L' is row-major 'U'; the matrix is symmetric, so either reads it.
    // SAFETY: `a` holds n × n floats (checked above) and the leading dimension is n;
    // the routines read and write only that matrix and `info`.
    unsafe {
        spotrf_(&b'L', &order, a.as_mut_ptr(), &order, &mut info);
        if info == 0 {
            spotri_(&b'L', &order, a.as_mut_ptr(), &order, &mut info);
        }
    }
    if info != 0 {
        return Err(info.unsigned_abs() as usize);
    }
    // Only the lower triangle (column-major), the upper one row-major, holds the
    // inverse: mirror it.
    for r in 0..n {
        for c in 0..r {
            a[r * n + c] = a[c * n + r];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Layout, add_a_wt, gemm, inverse_spd};

    #[test]
    fn matches_the_naive_product() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32).sin()).collect();
        let mut c = vec![1.0f32; m * n];
        add_a_wt(m, n, k, &a, &w, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want = 1.0 + (0..k).map(|t| a[i * k + t] * w[j * k + t]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-4, "{i},{j}");
            }
        }
    }

    #[test]
    fn strided_blocks_multiply_in_place() {
        // a and b are column blocks of wider matrices, c a block of a wider one.
        let wide: Vec<f32> = (0..4 * 7).map(|i| (i as f32 * 0.3).cos()).collect();
        let (a, la) = (&wide[1..], Layout { rows: 4, cols: 3, stride: 7 });
        let (b, lb) = (&wide[4..], Layout { rows: 3, cols: 2, stride: 7 });
        let mut c = [9.0f32; 4 * 5];
        gemm(
            2.0,
            (a, la),
            (b, lb),
            false,
            0.0,
            (&mut c[1..], Layout { rows: 4, cols: 2, stride: 5 }),
        );
        for i in 0..4 {
            for j in 0..2 {
                let want: f32 =
                    (0..3).map(|t| 2.0 * wide[1 + i * 7 + t] * wide[4 + t * 7 + j]).sum();
                assert!((c[1 + i * 5 + j] - want).abs() < 1e-5, "{i},{j}");
            }
            // Untouched outside the block.
            assert_eq!(c[i * 5], 9.0);
            assert_eq!(c[i * 5 + 3], 9.0);
        }
    }

    #[test]
    #[should_panic(expected = "the slice holds the matrix")]
    fn a_short_slice_is_refused() {
        let a = [0f32; 5];
        let mut c = [0f32; 4];
        gemm(
            1.0,
            (&a, Layout::dense(2, 3)),
            (&a, Layout::dense(3, 2)),
            false,
            0.0,
            (&mut c, Layout::dense(2, 2)),
        );
    }

    #[test]
    fn inverts_a_symmetric_positive_definite_matrix() {
        let n = 4;
        // A Gram matrix plus the identity: symmetric positive definite.
        let x: Vec<f32> = (0..n * n).map(|i| ((i * 7 % 5) as f32) - 2.0).collect();
        let mut a = vec![0f32; n * n];
        for r in 0..n {
            for c in 0..n {
                a[r * n + c] = (0..n).map(|k| x[k * n + r] * x[k * n + c]).sum::<f32>()
                    + if r == c { 1.0 } else { 0.0 };
            }
        }
        let mut inverse = a.clone();
        inverse_spd(&mut inverse, n).unwrap();
        for r in 0..n {
            for c in 0..n {
                let product: f32 = (0..n).map(|k| a[r * n + k] * inverse[k * n + c]).sum();
                let identity = if r == c { 1.0 } else { 0.0 };
                assert!((product - identity).abs() < 1e-4, "({r}, {c}): {product}");
            }
        }
        let mut singular = vec![1.0f32; 4];
        assert_eq!(inverse_spd(&mut singular, 2), Err(2));
    }
}
