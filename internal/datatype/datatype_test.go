package datatype

import "testing"

func TestDatatypes(t *testing.T) {
	for _, tc := range []struct {
		name, triton string
		size         int
	}{
		{"BOOL", "TYPE_BOOL", 1},
		{"UINT8", "TYPE_UINT8", 1},
		{"UINT16", "TYPE_UINT16", 2},
		{"UINT32", "TYPE_UINT32", 4},
		{"UINT64", "TYPE_UINT64", 8},
		{"INT8", "TYPE_INT8", 1},
		{"INT16", "TYPE_INT16", 2},
		{"INT32", "TYPE_INT32", 4},
		{"INT64", "TYPE_INT64", 8},
		{"FP16", "TYPE_FP16", 2},
		{"FP32", "TYPE_FP32", 4},
		{"FP64", "TYPE_FP64", 8},
		{"BF16", "TYPE_BF16", 2},
		{"BYTES", "TYPE_STRING", 0},
	} {
		if !Valid(tc.name) {
			t.Errorf("%s is not valid", tc.name)
		}
		if got, ok := Triton(tc.name); !ok || got != tc.triton {
			t.Errorf("Triton(%s) = %q, %v; want %q", tc.name, got, ok, tc.triton)
		}
		if got := Size(tc.name); got != tc.size {
			t.Errorf("Size(%s) = %d, want %d", tc.name, got, tc.size)
		}
	}
	for _, s := range []string{"", "fp32", "FLOAT", "TYPE_FP32", "STRING", "FP8"} {
		if Valid(s) || Size(s) != 0 {
			t.Errorf("%q: valid %v, size %d; want neither", s, Valid(s), Size(s))
		}
		if _, ok := Triton(s); ok {
			t.Errorf("Triton(%q) is known", s)
		}
	}
}
