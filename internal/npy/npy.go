// Package npy reads and writes NumPy .npy arrays (format versions 1.0 to 3.0), the format of
// a captured sample's input tensor (<key>.input.npy). Reading accepts little- and big-endian
// float32, float64 and uint8 arrays in C order and returns float32 values; writing produces
// version 1.0 little-endian float32 arrays, which numpy.load reads.
//
// Input may come from the network, so Read checks the header strictly, bounds its length and
// the array size, and allocates only in proportion to the data present.
package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Magic starts every .npy file.
const Magic = "\x93NUMPY"

// Limits on what Read accepts.
const (
	// MaxHeaderLen bounds the header dictionary (numpy writes well under 1 KiB).
	MaxHeaderLen = 64 << 10
	// MaxElements bounds the number of values of one array.
	MaxElements = 1 << 28
	// MaxRank bounds the number of dimensions.
	MaxRank = 32
)

// Array is a decoded array: its shape (empty for a scalar) and its values in C order.
type Array struct {
	// Descr is the file's dtype, such as "<f4" or "|u1": values of a uint8 array are grey
	// levels 0 to 255, not scaled.
	Descr string
	Shape []int
	Data  []float32
}

// Read decodes one .npy array from r and checks that nothing follows it.
func Read(r io.Reader) (*Array, error) {
	a, err := read(r, true)
	if err != nil {
		return nil, fmt.Errorf("npy read: %w", err)
	}
	return a, nil
}

// Check checks one .npy array from r as Read does (header, dtype, exactly the data the shape
// calls for, nothing after it) without converting the values: Data is nil. It is what a
// validator needs, at a fraction of Read's cost.
func Check(r io.Reader) (*Array, error) {
	a, err := read(r, false)
	if err != nil {
		return nil, fmt.Errorf("npy check: %w", err)
	}
	return a, nil
}

// Elements is the number of values the array's shape calls for.
func (a *Array) Elements() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

func read(r io.Reader, convert bool) (*Array, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("preamble: %w", err)
	}
	if string(pre[:6]) != Magic {
		return nil, errors.New("not a .npy file (bad magic)")
	}
	var hlen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("header length: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("header length: %w", err)
		}
		n := binary.LittleEndian.Uint32(b[:])
		if n > MaxHeaderLen {
			return nil, fmt.Errorf("header of %d bytes is above the limit of %d", n, MaxHeaderLen)
		}
		hlen = int(n)
	default:
		return nil, fmt.Errorf("format version %d.%d not supported", pre[6], pre[7])
	}
	header := make([]byte, hlen)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	h, err := parseHeader(string(header))
	if err != nil {
		return nil, fmt.Errorf("header %q: %w", header, err)
	}
	n := 1
	for _, d := range h.shape {
		if d != 0 && n > MaxElements/d {
			return nil, fmt.Errorf("shape %v: more than %d elements", h.shape, MaxElements)
		}
		n *= d
	}
	want := int64(n) * int64(h.size)
	var data []byte
	var got int64
	if convert {
		data, err = io.ReadAll(io.LimitReader(r, want+1))
		got = int64(len(data))
	} else {
		got, err = io.Copy(io.Discard, io.LimitReader(r, want+1))
	}
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	switch {
	case got < want:
		return nil, fmt.Errorf("data: %d bytes, shape %v of %s calls for %d: %w", got, h.shape, h.descr, want, io.ErrUnexpectedEOF)
	case got > want:
		return nil, errors.New("data after the array")
	}
	a := &Array{Descr: h.descr, Shape: h.shape}
	if convert {
		a.Data = h.convert(data, n)
	}
	return a, nil
}

// header is what the .npy header dictionary says.
type header struct {
	descr string
	order binary.ByteOrder
	size  int // bytes per element
	shape []int
}

// parseHeader reads the Python dict literal numpy writes, such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (1, 28, 28), }.
func parseHeader(s string) (header, error) {
	var h header
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return h, errors.New("not a dictionary")
	}
	s = strings.TrimSpace(s[1 : len(s)-1])
	seen := map[string]bool{}
	for s != "" {
		key, rest, err := pyString(s)
		if err != nil {
			return h, err
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, ":") {
			return h, fmt.Errorf("no ':' after key %q", key)
		}
		rest = strings.TrimSpace(rest[1:])
		if seen[key] {
			return h, fmt.Errorf("key %q given twice", key)
		}
		seen[key] = true
		switch key {
		case "descr":
			if h.descr, rest, err = pyString(rest); err != nil {
				return h, err
			}
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				rest = rest[len("False"):]
			case strings.HasPrefix(rest, "True"):
				// Fortran order only changes the layout when two or more dims exceed 1;
				// refuse it rather than transpose what edgeloop never writes.
				rest = rest[len("True"):]
				seen["fortran"] = true
			default:
				return h, errors.New("fortran_order is not True or False")
			}
		case "shape":
			if h.shape, rest, err = pyTuple(rest); err != nil {
				return h, err
			}
		default:
			return h, fmt.Errorf("unknown key %q", key)
		}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, ",") {
			rest = strings.TrimSpace(rest[1:])
		} else if rest != "" {
			return h, fmt.Errorf("unexpected %q", rest)
		}
		s = rest
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return h, fmt.Errorf("key %q missing", k)
		}
	}
	if seen["fortran"] {
		big := 0
		for _, d := range h.shape {
			if d > 1 {
				big++
			}
		}
		if big > 1 {
			return h, errors.New("fortran_order arrays are not supported")
		}
	}
	return h, h.parseDescr()
}

func (h *header) parseDescr() error {
	if len(h.descr) < 3 {
		return fmt.Errorf("dtype %q not supported", h.descr)
	}
	switch h.descr[0] {
	case '<', '|':
		h.order = binary.LittleEndian
	case '>':
		h.order = binary.BigEndian
	default:
		return fmt.Errorf("dtype %q not supported", h.descr)
	}
	switch h.descr[1:] {
	case "f4":
		h.size = 4
	case "f8":
		h.size = 8
	case "u1":
		h.size = 1
	default:
		return fmt.Errorf("dtype %q not supported (want float32, float64 or uint8)", h.descr)
	}
	return nil
}

func (h *header) convert(data []byte, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		switch h.descr[1:] {
		case "f4":
			out[i] = math.Float32frombits(h.order.Uint32(data[4*i:]))
		case "f8":
			out[i] = float32(math.Float64frombits(h.order.Uint64(data[8*i:])))
		default:
			out[i] = float32(data[i])
		}
	}
	return out
}

// pyString reads a quoted Python string literal without escapes from the start of s.
func pyString(s string) (string, string, error) {
	if s == "" || (s[0] != '\'' && s[0] != '"') {
		return "", s, fmt.Errorf("expected a string at %q", s)
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", s, errors.New("unterminated string")
	}
	return s[1 : 1+end], s[2+end:], nil
}

// pyTuple reads a tuple of non-negative integers, such as (1, 28, 28), (784,) or ().
func pyTuple(s string) ([]int, string, error) {
	if !strings.HasPrefix(s, "(") {
		return nil, s, errors.New("shape is not a tuple")
	}
	end := strings.IndexByte(s, ')')
	if end < 0 {
		return nil, s, errors.New("unterminated shape tuple")
	}
	shape := []int{}
	for _, part := range strings.Split(s[1:end], ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := strconv.Atoi(strings.TrimSuffix(part, "L")) // Python 2 wrote longs as 28L
		if err != nil || d < 0 {
			return nil, s, fmt.Errorf("bad dimension %q", part)
		}
		if len(shape) == MaxRank {
			return nil, s, fmt.Errorf("more than %d dimensions", MaxRank)
		}
		shape = append(shape, d)
	}
	return shape, s[end+1:], nil
}

// WriteFloat32 writes data as a version 1.0 little-endian float32 .npy array of the given shape.
func WriteFloat32(w io.Writer, shape []int, data []float32) error {
	n := 1
	dims := make([]string, len(shape))
	for i, d := range shape {
		if d < 0 {
			return fmt.Errorf("npy write: negative dimension in %v", shape)
		}
		n *= d
		dims[i] = strconv.Itoa(d)
	}
	if n != len(data) {
		return fmt.Errorf("npy write: shape %v calls for %d values, got %d", shape, n, len(data))
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	dict := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	// numpy pads the header with spaces and a newline so the data starts 64-byte aligned.
	total := len(Magic) + 2 + 2 + len(dict) + 1
	pad := (64 - total%64) % 64
	var b bytes.Buffer
	b.WriteString(Magic)
	b.Write([]byte{1, 0})
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(dict)+pad+1))
	b.WriteString(dict)
	b.WriteString(strings.Repeat(" ", pad))
	b.WriteByte('\n')
	out := b.Bytes()
	for _, v := range data {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("npy write: %w", err)
	}
	return nil
}
