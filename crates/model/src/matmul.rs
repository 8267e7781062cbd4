//! Matrix products on plain `f32` slices, for the fused trainer's hand-written layers: one
//! safe wrapper around `gemm`, the crate burn's CPU backend calls for its own matmul.

/// A matrix in a slice: its shape and its row and column strides, in elements.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl Shape {
    /// Row-major `rows x cols`.
    pub(crate) fn rows(rows: usize, cols: usize) -> Shape {
        Shape { rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose of this matrix, read in place.
    pub(crate) fn t(self) -> Shape {
        Shape { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    /// Whether every element lies inside a slice of `len`.
    fn fits(self, len: usize) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < len
    }
}

/// `dst = (read_dst ? dst : 0) + lhs * rhs` on this thread, through `gemm`, the crate burn's CPU
/// backend runs for its own matmul.
#[allow(unsafe_code)]
pub(crate) fn product(dst: &mut [f32], dst_shape: Shape, read_dst: bool, lhs: &[f32], lhs_shape: Shape, rhs: &[f32], rhs_shape: Shape) {
    let (m, n, k) = (dst_shape.rows, dst_shape.cols, lhs_shape.cols);
    assert!(lhs_shape.rows == m && rhs_shape.rows == k && rhs_shape.cols == n, "matrix shapes do not chain");
    assert!(dst_shape.fits(dst.len()) && lhs_shape.fits(lhs.len()) && rhs_shape.fits(rhs.len()), "matrix outside its slice");
    let s = |x: usize| x as isize;
    // SAFETY: every element of each matrix lies inside its slice (checked above), and `dst` is a
    // unique borrow, so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            s(dst_shape.col_stride),
            s(dst_shape.row_stride),
            read_dst,
            lhs.as_ptr(),
            s(lhs_shape.col_stride),
            s(lhs_shape.row_stride),
            rhs.as_ptr(),
            s(rhs_shape.col_stride),
            s(rhs_shape.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
