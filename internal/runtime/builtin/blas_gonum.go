//go:build !openblas

package builtin

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// sgemm is C = alpha·op(A)·op(B) + beta·C on row-major matrices. It calls gonum's pure-Go
// float32 BLAS directly rather than through blas32, whose implementation is a package-level
// variable any importer may replace. gonum's kernels use SSE dot and axpy loops on amd64. A
// single row (the batch-1 request of an edge node) goes to Sgemv: Sgemm splits even one row
// into goroutines, which made it twice as slow (BenchmarkKernel in bench_test.go, with the
// register-blocked kernel of our own that lost to both).
//
// Larger products are cut into tiles of at most 64 rows and 192 columns, each small enough
// that gonum computes it serially: above 3 blocks of 64×64 it starts a goroutine per block,
// which allocates on every call, and a request would no longer run allocation-free. One
// request thus runs on one core; a node's cores serve concurrent requests (docs/inference.md).
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	impl := gonum.Implementation{}
	if m == 1 && !transA {
		// c = alpha·op(B)ᵀ·a: with B stored n×k (transB) that is B·a, else Bᵀ·a.
		if transB {
			impl.Sgemv(blas.NoTrans, n, k, alpha, b, ldb, a, 1, beta, c, 1)
		} else {
			impl.Sgemv(blas.Trans, k, n, alpha, b, ldb, a, 1, beta, c, 1)
		}
		return
	}
	tA, tB := blas.NoTrans, blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	if transB {
		tB = blas.Trans
	}
	const rowTile, colTile = 64, 192
	for i0 := 0; i0 < m; i0 += rowTile {
		mi := min(rowTile, m-i0)
		aOff := i0 * lda // A is m×k
		if transA {
			aOff = i0 // A is stored k×m
		}
		for j0 := 0; j0 < n; j0 += colTile {
			nj := min(colTile, n-j0)
			bOff := j0 // B is k×n
			if transB {
				bOff = j0 * ldb // B is stored n×k
			}
			impl.Sgemm(tA, tB, mi, nj, k, alpha, a[aOff:], lda, b[bOff:], ldb, beta, c[i0*ldc+j0:], ldc)
		}
	}
}
