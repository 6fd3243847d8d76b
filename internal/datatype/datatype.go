// Package datatype names the Open Inference Protocol's tensor datatypes (KServe V2, Triton)
// once, for every place that checks or decodes one: the inference front's request decoder, the
// sample format and the model repository's manifests and Triton configurations. Before, three
// lists disagreed (one lacked BF16).
package datatype

// The datatypes, as requests, responses, samples and manifests spell them.
const (
	Bool   = "BOOL"
	Uint8  = "UINT8"
	Uint16 = "UINT16"
	Uint32 = "UINT32"
	Uint64 = "UINT64"
	Int8   = "INT8"
	Int16  = "INT16"
	Int32  = "INT32"
	Int64  = "INT64"
	FP16   = "FP16"
	FP32   = "FP32"
	FP64   = "FP64"
	BF16   = "BF16"
	Bytes  = "BYTES"
)

// Valid reports whether s is one of the datatypes.
func Valid(s string) bool {
	_, ok := Triton(s)
	return ok
}

// Size returns the width in bytes of one element of a fixed-size datatype, and 0 for BYTES
// (variable length) and unknown names.
func Size(s string) int {
	switch s {
	case Bool, Uint8, Int8:
		return 1
	case Uint16, Int16, FP16, BF16:
		return 2
	case Uint32, Int32, FP32:
		return 4
	case Uint64, Int64, FP64:
		return 8
	}
	return 0
}

// Triton returns the datatype's name in a Triton config.pbtxt ("TYPE_FP32"; BYTES is
// TYPE_STRING), and false for an unknown datatype.
func Triton(s string) (string, bool) {
	switch s {
	case Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, FP16, FP32, FP64, BF16:
		return "TYPE_" + s, true
	case Bytes:
		return "TYPE_STRING", true
	}
	return "", false
}
