package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of onnx.proto, grouped by message.
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelGraph           = 7
	modelOpsetImport     = 8
	modelMetadataProps   = 14

	graphNode               = 1
	graphName               = 2
	graphInitializer        = 5
	graphInput              = 11
	graphOutput             = 12
	graphSparseInitializer  = 15
	nodeInput               = 1
	nodeOutput              = 2
	nodeName                = 3
	nodeOpType              = 4
	nodeAttribute           = 5
	nodeDomain              = 7
	attrName                = 1
	attrF                   = 2
	attrI                   = 3
	attrS                   = 4
	attrT                   = 5
	attrG                   = 6
	attrFloats              = 7
	attrInts                = 8
	attrStrings             = 9
	attrTensors             = 10
	attrGraphs              = 11
	attrType                = 20
	attrSparseTensor        = 22
	attrSparseTensors       = 23
	tensorDims              = 1
	tensorDataType          = 2
	tensorSegment           = 3
	tensorFloatData         = 4
	tensorInt32Data         = 5
	tensorStringData        = 6
	tensorInt64Data         = 7
	tensorName              = 8
	tensorRawData           = 9
	tensorDoubleData        = 10
	tensorUint64Data        = 11
	tensorExternalData      = 13
	tensorDataLocation      = 14
	valueInfoName           = 1
	valueInfoType           = 2
	typeTensorType          = 1
	typeSequenceType        = 4
	typeMapType             = 5
	typeOptionalType        = 9
	typeSparseTensorType    = 8
	tensorTypeElemType      = 1
	tensorTypeShape         = 2
	shapeDim                = 1
	dimValue                = 1
	dimParam                = 2
	opsetDomain             = 1
	opsetVersion            = 2
	entryKey                = 1
	entryValue              = 2
	attributeTypeGraph      = 5
	attributeTypeTensors    = 9
	attributeTypeGraphs     = 10
	attributeTypeSparse     = 11
	attributeTypeSparseList = 12
)

// Decode parses an ONNX model file (a serialized ModelProto).
func Decode(data []byte) (*Model, error) {
	m, err := decodeModel(data)
	if err != nil {
		return nil, fmt.Errorf("onnx decode: %w", err)
	}
	return m, nil
}

// field is one field record of a message: its number, wire type and value.
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64 // the value of varint, fixed32 and fixed64 fields
	b   []byte // the value of length-delimited fields (aliases the input)
}

// walk calls fn for each field record in data, in order. Groups (deprecated in protobuf, unused
// by ONNX) are skipped whole and passed to fn without a value, so a known field number with
// the wrong wire type is still reported.
func walk(data []byte, fn func(f field) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("field tag: %w", parseError(n))
		}
		data = data[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.u, n = protowire.ConsumeVarint(data)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(data)
			f.u = uint64(v)
		case protowire.Fixed64Type:
			f.u, n = protowire.ConsumeFixed64(data)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, parseError(n))
		}
		data = data[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// parseError turns a protowire error code into an error that says "truncated" where it is one.
func parseError(n int) error {
	err := protowire.ParseError(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated input: %w", err)
	}
	return err
}

func (f field) wrongType(want string) error {
	return fmt.Errorf("field %d: wire type %d, want %s", f.num, f.typ, want)
}

func (f field) bytes() ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, f.wrongType("length-delimited")
	}
	return f.b, nil
}

func (f field) str() (string, error) {
	b, err := f.bytes()
	return string(b), err
}

func (f field) int64() (int64, error) {
	if f.typ != protowire.VarintType {
		return 0, f.wrongType("varint")
	}
	return int64(f.u), nil
}

// int32 decodes an int32 or enum field: protobuf writes negative values sign-extended to 64 bits.
func (f field) int32() (int32, error) {
	v, err := f.int64()
	return int32(v), err
}

func (f field) float32() (float32, error) {
	if f.typ != protowire.Fixed32Type {
		return 0, f.wrongType("fixed32")
	}
	return math.Float32frombits(uint32(f.u)), nil
}

// appendVarints appends a repeated varint field, packed or not (parsers must accept both).
func appendVarints(dst []int64, f field) ([]int64, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(dst, int64(f.u)), nil
	case protowire.BytesType:
		for b := f.b; len(b) > 0; {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("field %d: packed varint: %w", f.num, parseError(n))
			}
			dst = append(dst, int64(v))
			b = b[n:]
		}
		return dst, nil
	}
	return nil, f.wrongType("varint or packed varints")
}

// appendFloats appends a repeated float field, packed or not.
func appendFloats(dst []float32, f field) ([]float32, error) {
	switch f.typ {
	case protowire.Fixed32Type:
		return append(dst, math.Float32frombits(uint32(f.u))), nil
	case protowire.BytesType:
		if len(f.b)%4 != 0 {
			return nil, fmt.Errorf("field %d: packed floats: %d bytes is not a multiple of 4", f.num, len(f.b))
		}
		dst = append(dst, make([]float32, len(f.b)/4)...)
		tail := dst[len(dst)-len(f.b)/4:]
		for i := range tail {
			tail[i] = math.Float32frombits(binary.LittleEndian.Uint32(f.b[4*i:]))
		}
		return dst, nil
	}
	return nil, f.wrongType("fixed32 or packed fixed32")
}

func decodeModel(data []byte) (*Model, error) {
	m := &Model{}
	var graph []byte
	hasGraph := false
	err := walk(data, func(f field) error {
		var err error
		switch f.num {
		case modelIRVersion:
			m.IRVersion, err = f.int64()
		case modelProducerName:
			m.ProducerName, err = f.str()
		case modelProducerVersion:
			m.ProducerVersion, err = f.str()
		case modelGraph:
			if hasGraph {
				return errors.New("graph given twice")
			}
			hasGraph = true
			graph, err = f.bytes()
		case modelOpsetImport:
			var b []byte
			if b, err = f.bytes(); err != nil {
				return err
			}
			var o Opset
			if o, err = decodeOpset(b); err != nil {
				return fmt.Errorf("opset_import[%d]: %w", len(m.Opsets), err)
			}
			m.Opsets = append(m.Opsets, o)
		case modelMetadataProps:
			var b []byte
			if b, err = f.bytes(); err != nil {
				return err
			}
			var k, v string
			if k, v, err = decodeEntry(b); err != nil {
				return fmt.Errorf("metadata_props: %w", err)
			}
			if _, dup := m.Metadata[k]; dup {
				return fmt.Errorf("metadata_props: key %q given twice", k)
			}
			if m.Metadata == nil {
				m.Metadata = map[string]string{}
			}
			m.Metadata[k] = v
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !hasGraph {
		return nil, errors.New("model has no graph")
	}
	if m.Graph, err = decodeGraph(graph); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	return m, nil
}

func decodeOpset(data []byte) (Opset, error) {
	var o Opset
	err := walk(data, func(f field) error {
		var err error
		switch f.num {
		case opsetDomain:
			o.Domain, err = f.str()
		case opsetVersion:
			o.Version, err = f.int64()
		}
		return err
	})
	return o, err
}

func decodeEntry(data []byte) (key, value string, err error) {
	err = walk(data, func(f field) error {
		var err error
		switch f.num {
		case entryKey:
			key, err = f.str()
		case entryValue:
			value, err = f.str()
		}
		return err
	})
	return key, value, err
}

func decodeGraph(data []byte) (Graph, error) {
	var g Graph
	names := map[string]bool{}
	err := walk(data, func(f field) error {
		var err error
		var b []byte
		switch f.num {
		case graphName:
			g.Name, err = f.str()
		case graphNode:
			if b, err = f.bytes(); err != nil {
				return err
			}
			var n Node
			if n, err = decodeNode(b); err != nil {
				return fmt.Errorf("node[%d]%s: %w", len(g.Nodes), quoted(n.Name), err)
			}
			g.Nodes = append(g.Nodes, n)
		case graphInitializer:
			if b, err = f.bytes(); err != nil {
				return err
			}
			var t Tensor
			if t, err = decodeTensor(b); err != nil {
				return fmt.Errorf("initializer[%d]%s: %w", len(g.Initializers), quoted(t.Name), err)
			}
			if names[t.Name] {
				return fmt.Errorf("initializer[%d] %q: name given twice", len(g.Initializers), t.Name)
			}
			names[t.Name] = true
			g.Initializers = append(g.Initializers, t)
		case graphInput, graphOutput:
			if b, err = f.bytes(); err != nil {
				return err
			}
			list, what := &g.Inputs, "input"
			if f.num == graphOutput {
				list, what = &g.Outputs, "output"
			}
			var v ValueInfo
			if v, err = decodeValueInfo(b); err != nil {
				return fmt.Errorf("%s[%d]%s: %w", what, len(*list), quoted(v.Name), err)
			}
			*list = append(*list, v)
		case graphSparseInitializer:
			return errors.New("sparse initializers are not supported")
		}
		return err
	})
	return g, err
}

// quoted is " \"name\"" for error paths, or nothing when the name is not known (yet).
func quoted(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" %q", name)
}

func decodeNode(data []byte) (Node, error) {
	var n Node
	err := walk(data, func(f field) error {
		var err error
		switch f.num {
		case nodeInput, nodeOutput:
			var s string
			if s, err = f.str(); err != nil {
				return err
			}
			if f.num == nodeInput {
				n.Inputs = append(n.Inputs, s)
			} else {
				n.Outputs = append(n.Outputs, s)
			}
		case nodeName:
			n.Name, err = f.str()
		case nodeOpType:
			n.OpType, err = f.str()
		case nodeDomain:
			n.Domain, err = f.str()
		case nodeAttribute:
			var b []byte
			if b, err = f.bytes(); err != nil {
				return err
			}
			name, a, err := decodeAttribute(b)
			if err != nil {
				return fmt.Errorf("attribute[%d]%s: %w", len(n.Attrs), quoted(name), err)
			}
			if _, dup := n.Attrs[name]; dup {
				return fmt.Errorf("attribute %q given twice", name)
			}
			if n.Attrs == nil {
				n.Attrs = map[string]Attribute{}
			}
			n.Attrs[name] = a
		}
		return err
	})
	if err == nil && n.OpType == "" {
		err = errors.New("node has no op_type")
	}
	return n, err
}

func decodeAttribute(data []byte) (string, Attribute, error) {
	var (
		name     string
		a        Attribute
		declared AttrType // the type field; IR version 1 files lack it
		inferred AttrType // from the value fields present
	)
	err := walk(data, func(f field) error {
		var err error
		switch f.num {
		case attrName:
			name, err = f.str()
		case attrType:
			var v int32
			v, err = f.int32()
			declared = AttrType(v)
		case attrF:
			a.Float, err = f.float32()
			inferred = AttrFloat
		case attrI:
			a.Int, err = f.int64()
			inferred = AttrInt
		case attrS:
			a.String, err = f.str()
			inferred = AttrString
		case attrT:
			var b []byte
			if b, err = f.bytes(); err != nil {
				return err
			}
			t, err := decodeTensor(b)
			if err != nil {
				return fmt.Errorf("tensor: %w", err)
			}
			a.Tensor = &t
			inferred = AttrTensor
		case attrFloats:
			a.Floats, err = appendFloats(a.Floats, f)
			inferred = AttrFloats
		case attrInts:
			a.Ints, err = appendVarints(a.Ints, f)
			inferred = AttrInts
		case attrStrings:
			var s string
			s, err = f.str()
			a.Strings = append(a.Strings, s)
			inferred = AttrStrings
		case attrG, attrGraphs, attrTensors, attrSparseTensor, attrSparseTensors:
			inferred = attributeTypeGraph // any unsupported kind; reported below
		}
		return err
	})
	if err != nil {
		return name, a, err
	}
	if name == "" {
		return name, a, errors.New("attribute has no name")
	}
	a.Type = declared
	if a.Type == AttrUndefined {
		a.Type = inferred
	}
	switch a.Type {
	case AttrFloat, AttrInt, AttrString, AttrFloats, AttrInts, AttrStrings:
	case AttrTensor:
		if a.Tensor == nil {
			return name, a, errors.New("tensor attribute without a tensor")
		}
	case AttrUndefined:
		return name, a, errors.New("attribute has no value")
	case attributeTypeGraph, attributeTypeGraphs, attributeTypeTensors, attributeTypeSparse, attributeTypeSparseList:
		return name, a, fmt.Errorf("attribute type %d (graph, sparse tensor or tensor list) is not supported", a.Type)
	default:
		return name, a, fmt.Errorf("unknown attribute type %d", a.Type)
	}
	return name, a, nil
}

// Which data fields a TensorProto used; exactly one may be present.
const (
	hasRaw = 1 << iota
	hasFloatData
	hasInt32Data
	hasInt64Data
	hasUint64Data
	hasDoubleData
)

// DecodeTensor parses a serialized TensorProto, such as the input_*.pb and output_*.pb files of
// ONNX's backend test data, with the checks Decode applies to initializers.
func DecodeTensor(data []byte) (*Tensor, error) {
	t, err := decodeTensor(data)
	if err != nil {
		return nil, fmt.Errorf("onnx decode tensor: %w", err)
	}
	return &t, nil
}

func decodeTensor(data []byte) (Tensor, error) {
	var (
		t      Tensor
		raw    []byte
		floats []float32
		ints   []int64
		dbls   []float64
		fields int
	)
	err := walk(data, func(f field) error {
		var err error
		switch f.num {
		case tensorDims:
			if t.Dims, err = appendVarints(t.Dims, f); err == nil && len(t.Dims) > MaxRank {
				err = fmt.Errorf("more than %d dims", MaxRank)
			}
		case tensorDataType:
			var v int32
			v, err = f.int32()
			t.DataType = DataType(v)
		case tensorName:
			t.Name, err = f.str()
		case tensorRawData:
			raw, err = f.bytes()
			fields |= hasRaw
		case tensorFloatData:
			floats, err = appendFloats(floats, f)
			fields |= hasFloatData
		case tensorInt32Data:
			ints, err = appendVarints(ints, f)
			fields |= hasInt32Data
		case tensorInt64Data:
			ints, err = appendVarints(ints, f)
			fields |= hasInt64Data
		case tensorUint64Data:
			ints, err = appendVarints(ints, f)
			fields |= hasUint64Data
		case tensorDoubleData:
			dbls, err = appendDoubles(dbls, f)
			fields |= hasDoubleData
		case tensorStringData:
			err = fmt.Errorf("field %d: string tensor data is not supported", f.num)
		case tensorSegment:
			err = errors.New("segmented tensors are not supported")
		case tensorExternalData:
			err = errors.New("external tensor data is not supported")
		case tensorDataLocation:
			var v int64
			if v, err = f.int64(); err == nil && v != 0 {
				err = errors.New("external tensor data is not supported")
			}
		}
		return err
	})
	if err != nil {
		return t, err
	}
	elems, err := numElements(t.Dims)
	if err != nil {
		return t, err
	}
	size, ok := t.DataType.elemSize()
	if !ok {
		return t, fmt.Errorf("tensor data of type %v is not supported", t.DataType)
	}
	switch fields {
	case 0:
		if elems != 0 {
			return t, fmt.Errorf("dims %v call for %d elements but the tensor has no data", t.Dims, elems)
		}
	case hasRaw:
		if int64(len(raw)) != elems*int64(size) {
			return t, fmt.Errorf("raw_data has %d bytes, dims %v of %v call for %d", len(raw), t.Dims, t.DataType, elems*int64(size))
		}
		decodeRaw(&t, raw, size)
	case hasFloatData:
		if t.DataType != Float {
			return t, fmt.Errorf("float_data in a tensor of type %v", t.DataType)
		}
		t.Float32 = floats
	case hasInt32Data, hasInt64Data, hasUint64Data:
		if want := typedField(t.DataType); want != fields {
			return t, fmt.Errorf("data field %s in a tensor of type %v", dataFieldName(fields), t.DataType)
		}
		t.Int64 = ints
	case hasDoubleData:
		if t.DataType != Double {
			return t, fmt.Errorf("double_data in a tensor of type %v", t.DataType)
		}
		t.Float64 = dbls
	default:
		return t, errors.New("more than one data field is set")
	}
	if fields != hasRaw && fields != 0 {
		if n := int64(len(t.Float32) + len(t.Int64) + len(t.Float64)); n != elems {
			return t, fmt.Errorf("has %d elements, dims %v call for %d", n, t.Dims, elems)
		}
	}
	if err := checkRange(t.DataType, t.Int64); err != nil {
		return t, err
	}
	if fields == 0 {
		switch { // an empty tensor still holds a (non-nil) empty slice of its kind
		case t.DataType == Float:
			t.Float32 = []float32{}
		case t.DataType == Double:
			t.Float64 = []float64{}
		default:
			t.Int64 = []int64{}
		}
	}
	return t, nil
}

// typedField is the TensorProto data field that holds dt's elements when raw_data is not used.
func typedField(dt DataType) int {
	switch dt {
	case Float:
		return hasFloatData
	case Int64:
		return hasInt64Data
	case Uint32:
		return hasUint64Data
	}
	return hasInt32Data // int32, int16, int8, uint16, uint8, bool
}

func dataFieldName(field int) string {
	switch field {
	case hasFloatData:
		return "float_data"
	case hasInt32Data:
		return "int32_data"
	case hasInt64Data:
		return "int64_data"
	case hasUint64Data:
		return "uint64_data"
	case hasDoubleData:
		return "double_data"
	}
	return "raw_data"
}

// appendDoubles appends a repeated double field, packed or not.
func appendDoubles(dst []float64, f field) ([]float64, error) {
	switch f.typ {
	case protowire.Fixed64Type:
		return append(dst, math.Float64frombits(f.u)), nil
	case protowire.BytesType:
		if len(f.b)%8 != 0 {
			return dst, fmt.Errorf("field %d: packed doubles of %d bytes", f.num, len(f.b))
		}
		for b := f.b; len(b) > 0; b = b[8:] {
			dst = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(b)))
		}
		return dst, nil
	}
	return dst, f.wrongType("double")
}

// decodeRaw fills t's data from little-endian raw_data whose length has been checked.
func decodeRaw(t *Tensor, raw []byte, size int) {
	n := len(raw) / size
	if t.DataType == Float {
		t.Float32 = make([]float32, n)
		for i := range t.Float32 {
			t.Float32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return
	}
	if t.DataType == Double {
		t.Float64 = make([]float64, n)
		for i := range t.Float64 {
			t.Float64[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		return
	}
	t.Int64 = make([]int64, n)
	for i := range t.Int64 {
		switch t.DataType {
		case Int64:
			t.Int64[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		case Int32:
			t.Int64[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		case Uint32:
			t.Int64[i] = int64(binary.LittleEndian.Uint32(raw[4*i:]))
		case Int16:
			t.Int64[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
		case Uint16:
			t.Int64[i] = int64(binary.LittleEndian.Uint16(raw[2*i:]))
		case Int8:
			t.Int64[i] = int64(int8(raw[i]))
		default: // Uint8, Bool
			t.Int64[i] = int64(raw[i])
		}
	}
}

// checkRange rejects widened integers that do not fit the declared type, so Int64 always holds
// values of DataType.
func checkRange(dt DataType, vals []int64) error {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	switch dt {
	case Int32:
		lo, hi = math.MinInt32, math.MaxInt32
	case Uint32:
		lo, hi = 0, math.MaxUint32
	case Int16:
		lo, hi = math.MinInt16, math.MaxInt16
	case Uint16:
		lo, hi = 0, math.MaxUint16
	case Int8:
		lo, hi = math.MinInt8, math.MaxInt8
	case Uint8:
		lo, hi = 0, math.MaxUint8
	case Bool:
		lo, hi = 0, 1
	}
	for i, v := range vals {
		if v < lo || v > hi {
			return fmt.Errorf("element %d = %d does not fit type %v", i, v, dt)
		}
	}
	return nil
}

// numElements is the product of dims, refusing negative dims and products above MaxElements
// (checked before each multiplication, so it cannot overflow).
func numElements(dims []int64) (int64, error) {
	if len(dims) > MaxRank {
		return 0, fmt.Errorf("rank %d is above the limit of %d", len(dims), MaxRank)
	}
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("dims %v: negative dimension", dims)
		}
		if d != 0 && n > MaxElements/d {
			return 0, fmt.Errorf("dims %v: more than %d elements", dims, int64(MaxElements))
		}
		n *= d
	}
	return n, nil
}

func decodeValueInfo(data []byte) (ValueInfo, error) {
	var v ValueInfo
	err := walk(data, func(f field) error {
		var err error
		switch f.num {
		case valueInfoName:
			v.Name, err = f.str()
		case valueInfoType:
			var b []byte
			if b, err = f.bytes(); err != nil {
				return err
			}
			err = decodeType(b, &v)
		}
		return err
	})
	return v, err
}

// decodeType reads a TypeProto into v; only tensor types can be graph inputs and outputs of
// the models this package serves.
func decodeType(data []byte, v *ValueInfo) error {
	return walk(data, func(f field) error {
		switch f.num {
		case typeTensorType:
			b, err := f.bytes()
			if err != nil {
				return err
			}
			return decodeTensorType(b, v)
		case typeSequenceType, typeMapType, typeSparseTensorType, typeOptionalType:
			return fmt.Errorf("type field %d: only dense tensor types are supported", f.num)
		}
		return nil
	})
}

func decodeTensorType(data []byte, v *ValueInfo) error {
	return walk(data, func(f field) error {
		switch f.num {
		case tensorTypeElemType:
			t, err := f.int32()
			v.ElemType = DataType(t)
			return err
		case tensorTypeShape:
			b, err := f.bytes()
			if err != nil {
				return err
			}
			v.Shape = []Dim{} // present, so a scalar if it has no dims
			return walk(b, func(f field) error {
				if f.num != shapeDim {
					return nil
				}
				b, err := f.bytes()
				if err != nil {
					return err
				}
				if len(v.Shape) == MaxRank {
					return fmt.Errorf("shape has more than %d dims", MaxRank)
				}
				d, err := decodeDim(b)
				v.Shape = append(v.Shape, d)
				return err
			})
		}
		return nil
	})
}

func decodeDim(data []byte) (Dim, error) {
	d := Dim{Value: -1}
	err := walk(data, func(f field) error {
		var err error
		switch f.num {
		case dimValue:
			var x int64
			if x, err = f.int64(); err == nil && x >= 0 { // some exporters write -1 for unknown
				d.Value, d.Param = x, ""
			}
		case dimParam:
			var s string
			if s, err = f.str(); err == nil {
				d.Value, d.Param = -1, s
			}
		}
		return err
	})
	return d, err
}
