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

/// `c += a · wᵀ`, row-major: `a` is `m × k`, `w` is `n × k` (a linear layer's weight as
/// stored, out × in), `c` is `m × n`.
pub(crate) fn add_a_wt(m: usize, n: usize, k: usize, a: &[f32], w: &[f32], c: &mut [f32]) {
    assert_eq!(a.len(), m * k, "a is m × k");
    assert_eq!(w.len(), n * k, "w is n × k");
    assert_eq!(c.len(), m * n, "c is m × n");
    if m == 0 || n == 0 {
        return;
    }
    let dim = |x: usize| i32::try_from(x).expect("matrix dimension fits in i32");
    // SAFETY: the three slices hold exactly the m × k, n × k and m × n floats the call
    // reads and writes (checked above), with leading dimensions k, k and n; `c` is a
    // unique borrow, so nothing else reads it while OpenBLAS writes.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            NO_TRANS,
            TRANS,
            dim(m),
            dim(n),
            dim(k),
            1.0,
            a.as_ptr(),
            dim(k),
            w.as_ptr(),
            dim(k),
            1.0,
            c.as_mut_ptr(),
            dim(n),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::add_a_wt;

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
}
