//go:build openblas

package builtin

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>

// edgeloop_sgemm hides the CBLAS enums, whose C types differ between cblas.h variants.
static void edgeloop_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
		const float *b, int ldb, float beta, float *c, int ldc) {
	cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
		m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
*/
import "C"

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// sgemm is C = alpha·op(A)·op(B) + beta·C on row-major matrices, computed by OpenBLAS
// (Debian's libopenblas-dev) through cgo. It is built with -tags openblas only: the default
// build stays pure Go on gonum (blas_gonum.go). OpenBLAS's own threads follow
// OPENBLAS_NUM_THREADS; its kernels are the optimised, blocked ones that gonum's Sgemm lacks
// (docs/benchmarks.md has the numbers). A single row stays on gonum's Sgemv, which
// beat OpenBLAS's sgemm on it fourfold (81 µs against 19 µs on the reference MLP).
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if m == 1 && !transA {
		impl := gonum.Implementation{}
		if transB {
			impl.Sgemv(blas.NoTrans, n, k, alpha, b, ldb, a, 1, beta, c, 1)
		} else {
			impl.Sgemv(blas.Trans, k, n, alpha, b, ldb, a, 1, beta, c, 1)
		}
		return
	}
	if k == 0 { // no products: C = beta·C (and a or b may be empty)
		for i := range m {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				row[j] *= beta
			}
		}
		return
	}
	var ta, tb C.int
	if transA {
		ta = 1
	}
	if transB {
		tb = 1
	}
	C.edgeloop_sgemm(ta, tb, C.int(m), C.int(n), C.int(k), C.float(alpha), (*C.float)(&a[0]), C.int(lda),
		(*C.float)(&b[0]), C.int(ldb), C.float(beta), (*C.float)(&c[0]), C.int(ldc))
}
