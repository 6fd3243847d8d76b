package npy

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, shape := range [][]int{{1, 28, 28}, {784}, {}, {2, 0}} {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i)/7 - 3
		}
		if n > 2 {
			data[1] = float32(math.Inf(-1))
		}
		var b bytes.Buffer
		if err := WriteFloat32(&b, shape, data); err != nil {
			t.Fatal(err)
		}
		if hl := b.Len() - 4*n; hl%64 != 0 {
			t.Errorf("shape %v: data starts at byte %d, numpy aligns it to 64", shape, hl)
		}
		c, err := Check(bytes.NewReader(b.Bytes()))
		if err != nil || !reflect.DeepEqual(c.Shape, shape) || c.Elements() != n || c.Data != nil {
			t.Errorf("shape %v: Check = %+v, %v; want the shape, %d elements, no data", shape, c, err, n)
		}
		a, err := Read(&b)
		if err != nil {
			t.Fatalf("shape %v: %v", shape, err)
		}
		if !reflect.DeepEqual(a.Shape, shape) || !reflect.DeepEqual(a.Data, data) {
			t.Errorf("shape %v: read back %v %v", shape, a.Shape, a.Data[:min(4, len(a.Data))])
		}
	}
}

// npyFile is a .npy file written by hand, byte by byte, the way numpy.save lays it out.
func npyFile(version byte, dict string, data []byte) []byte {
	b := []byte(Magic)
	b = append(b, version, 0)
	if version == 1 {
		b = append(b, byte(len(dict)), byte(len(dict)>>8))
	} else {
		b = append(b, byte(len(dict)), byte(len(dict)>>8), 0, 0)
	}
	return append(append(b, dict...), data...)
}

func TestReadHandMade(t *testing.T) {
	tests := []struct {
		name  string
		file  []byte
		shape []int
		data  []float32
	}{
		{"float32 little-endian v1", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }   \n", []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}), []int{2}, []float32{1, -2}},
		{"float32 big-endian v2", npyFile(2, `{"descr": ">f4", "fortran_order": False, "shape": (1, 1)}`, []byte{0x3f, 0x80, 0, 0}), []int{1, 1}, []float32{1}},
		{"float64 v3", npyFile(3, "{'shape': (1,), 'fortran_order': False, 'descr': '<f8'}\n", []byte{0, 0, 0, 0, 0, 0, 0xe0, 0x3f}), []int{1}, []float32{0.5}},
		{"uint8 python2 longs", npyFile(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 1L), }\n", []byte{0, 255}), []int{2, 1}, []float32{0, 255}},
		{"fortran order of a vector", npyFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1), }\n", []byte{0, 0, 0x80, 0x3f}), []int{1, 1}, []float32{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Read(bytes.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a.Shape, tt.shape) || !reflect.DeepEqual(a.Data, tt.data) {
				t.Errorf("got %v %v, want %v %v", a.Shape, a.Data, tt.shape, tt.data)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	f4 := func(dict string, data ...byte) []byte { return npyFile(1, dict, data) }
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "preamble: EOF"},
		{"bad magic", []byte("\x93NUMPX\x01\x00\x00\x00"), "bad magic"},
		{"version 4", []byte("\x93NUMPY\x04\x00\x00\x00"), "format version 4.0"},
		{"header too long", []byte("\x93NUMPY\x02\x00\xff\xff\xff\x00"), "above the limit"},
		{"truncated header", []byte("\x93NUMPY\x01\x00\x40\x00{'descr'"), "header: unexpected EOF"},
		{"not a dict", f4("'descr'"), "not a dictionary"},
		{"missing shape", f4("{'descr': '<f4', 'fortran_order': False}"), `key "shape" missing`},
		{"unknown key", f4("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}"), `unknown key "x"`},
		{"duplicate key", f4("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}"), `key "descr" given twice`},
		{"unsupported dtype", f4("{'descr': '<i8', 'fortran_order': False, 'shape': ()}"), `dtype "<i8" not supported`},
		{"object dtype", f4("{'descr': '|O', 'fortran_order': False, 'shape': ()}"), `dtype "|O" not supported`},
		{"fortran matrix", f4("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}"), "fortran_order arrays are not supported"},
		{"negative dim", f4("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}"), `bad dimension "-1"`},
		{"huge shape", f4("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536)}"), "more than 268435456 elements"},
		{"too many dims", f4("{'descr': '<f4', 'fortran_order': False, 'shape': (" + strings.Repeat("1,", 33) + ")}"), "more than 32 dimensions"},
		{"truncated data", f4("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 0, 0, 0x80, 0x3f), "data: 4 bytes, shape [2] of <f4 calls for 8"},
		{"trailing data", f4("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 0, 0, 0x80, 0x3f, 1), "data after the array"},
		{"garbage after value", f4("{'descr': '<f4' 'shape': ()}"), "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Read(bytes.NewReader(tt.file))
			if err == nil {
				t.Fatalf("Read succeeded: %+v", a)
			}
			if !strings.HasPrefix(err.Error(), "npy read: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			// Check refuses exactly what Read refuses, for the same reason.
			if _, err := Check(bytes.NewReader(tt.file)); err == nil || !strings.HasPrefix(err.Error(), "npy check: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check: error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFloat32(&b, []int{2, 2}, make([]float32, 3)); err == nil {
		t.Error("WriteFloat32 accepted 3 values for shape [2 2]")
	}
	if err := WriteFloat32(&b, []int{-1}, nil); err == nil {
		t.Error("WriteFloat32 accepted a negative dimension")
	}
}

// TestWriteMatchesNumpy checks the header byte for byte against what numpy 1.24's numpy.save
// writes for a float32 array of shape (1, 28, 28).
func TestWriteMatchesNumpy(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFloat32(&b, []int{1, 28, 28}, make([]float32, 784)); err != nil {
		t.Fatal(err)
	}
	want := "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 28, 28), }" + strings.Repeat(" ", 53) + "\n"
	if got := b.String()[:128]; got != want {
		t.Errorf("header\n%q\nwant\n%q", got, want)
	}
	a, err := Read(&b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Descr != "<f4" {
		t.Errorf("Descr = %q", a.Descr)
	}
}
