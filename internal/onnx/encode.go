package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Encode serializes m as an ONNX model file. Fields are written in field-number order, as
// protobuf's own serializers do, and map entries (metadata, attributes) sorted by key, so the
// same model always encodes to the same bytes. Tensor data is written as raw_data. Encode
// refuses what Decode would refuse: tensors whose data does not match their dims or type,
// attributes without a valid type, nodes without an op_type.
func Encode(m *Model) ([]byte, error) {
	if m == nil {
		return nil, errors.New("onnx encode: nil model")
	}
	b, err := encodeModel(m)
	if err != nil {
		return nil, fmt.Errorf("onnx encode: %w", err)
	}
	return b, nil
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func encodeModel(m *Model) ([]byte, error) {
	var b []byte
	b = appendVarintField(b, modelIRVersion, uint64(m.IRVersion))
	if m.ProducerName != "" {
		b = appendStringField(b, modelProducerName, m.ProducerName)
	}
	if m.ProducerVersion != "" {
		b = appendStringField(b, modelProducerVersion, m.ProducerVersion)
	}
	g, err := encodeGraph(&m.Graph)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	b = appendBytesField(b, modelGraph, g)
	for _, o := range m.Opsets {
		// The domain is written even when empty, as onnx.helper.make_opsetid does.
		ob := appendStringField(nil, opsetDomain, o.Domain)
		ob = appendVarintField(ob, opsetVersion, uint64(o.Version))
		b = appendBytesField(b, modelOpsetImport, ob)
	}
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		eb := appendStringField(nil, entryKey, k)
		eb = appendStringField(eb, entryValue, m.Metadata[k])
		b = appendBytesField(b, modelMetadataProps, eb)
	}
	return b, nil
}

func encodeGraph(g *Graph) ([]byte, error) {
	var b []byte
	for i := range g.Nodes {
		nb, err := encodeNode(&g.Nodes[i])
		if err != nil {
			return nil, fmt.Errorf("node[%d]%s: %w", i, quoted(g.Nodes[i].Name), err)
		}
		b = appendBytesField(b, graphNode, nb)
	}
	if g.Name != "" {
		b = appendStringField(b, graphName, g.Name)
	}
	names := map[string]bool{}
	for i := range g.Initializers {
		t := &g.Initializers[i]
		if names[t.Name] {
			return nil, fmt.Errorf("initializer[%d] %q: name given twice", i, t.Name)
		}
		names[t.Name] = true
		tb, err := encodeTensor(t)
		if err != nil {
			return nil, fmt.Errorf("initializer[%d]%s: %w", i, quoted(t.Name), err)
		}
		b = appendBytesField(b, graphInitializer, tb)
	}
	for _, v := range g.Inputs {
		b = appendBytesField(b, graphInput, encodeValueInfo(v))
	}
	for _, v := range g.Outputs {
		b = appendBytesField(b, graphOutput, encodeValueInfo(v))
	}
	return b, nil
}

func encodeNode(n *Node) ([]byte, error) {
	if n.OpType == "" {
		return nil, errors.New("node has no op_type")
	}
	var b []byte
	for _, s := range n.Inputs {
		b = appendStringField(b, nodeInput, s)
	}
	for _, s := range n.Outputs {
		b = appendStringField(b, nodeOutput, s)
	}
	if n.Name != "" {
		b = appendStringField(b, nodeName, n.Name)
	}
	b = appendStringField(b, nodeOpType, n.OpType)
	names := make([]string, 0, len(n.Attrs))
	for k := range n.Attrs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		ab, err := encodeAttribute(name, n.Attrs[name])
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", name, err)
		}
		b = appendBytesField(b, nodeAttribute, ab)
	}
	if n.Domain != "" {
		b = appendStringField(b, nodeDomain, n.Domain)
	}
	return b, nil
}

func encodeAttribute(name string, a Attribute) ([]byte, error) {
	if name == "" {
		return nil, errors.New("attribute has no name")
	}
	b := appendStringField(nil, attrName, name)
	switch a.Type {
	case AttrFloat:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.Float))
	case AttrInt:
		b = appendVarintField(b, attrI, uint64(a.Int))
	case AttrString:
		b = appendStringField(b, attrS, a.String)
	case AttrTensor:
		if a.Tensor == nil {
			return nil, errors.New("tensor attribute without a tensor")
		}
		tb, err := encodeTensor(a.Tensor)
		if err != nil {
			return nil, fmt.Errorf("tensor: %w", err)
		}
		b = appendBytesField(b, attrT, tb)
	case AttrFloats: // proto2 repeated scalars are unpacked unless declared packed
		for _, f := range a.Floats {
			b = protowire.AppendTag(b, attrFloats, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, math.Float32bits(f))
		}
	case AttrInts:
		for _, v := range a.Ints {
			b = appendVarintField(b, attrInts, uint64(v))
		}
	case AttrStrings:
		for _, s := range a.Strings {
			b = appendStringField(b, attrStrings, s)
		}
	default:
		return nil, fmt.Errorf("attribute type %d is not supported", a.Type)
	}
	return appendVarintField(b, attrType, uint64(a.Type)), nil
}

func encodeTensor(t *Tensor) ([]byte, error) {
	elems, err := numElements(t.Dims)
	if err != nil {
		return nil, err
	}
	size, ok := t.DataType.elemSize()
	if !ok {
		return nil, fmt.Errorf("tensor data of type %v is not supported", t.DataType)
	}
	n, other := len(t.Int64), len(t.Float32)+len(t.Float64)
	switch t.DataType {
	case Float:
		n, other = len(t.Float32), len(t.Int64)+len(t.Float64)
	case Double:
		n, other = len(t.Float64), len(t.Int64)+len(t.Float32)
	}
	if int64(n) != elems || other != 0 {
		return nil, fmt.Errorf("has %d elements of type %v (and %d of another), dims %v call for %d", n, t.DataType, other, t.Dims, elems)
	}
	if err := checkRange(t.DataType, t.Int64); err != nil {
		return nil, err
	}
	var b []byte
	for _, d := range t.Dims { // dims is a proto2 repeated int64: unpacked
		b = appendVarintField(b, tensorDims, uint64(d))
	}
	b = appendVarintField(b, tensorDataType, uint64(t.DataType))
	if t.Name != "" {
		b = appendStringField(b, tensorName, t.Name)
	}
	raw := make([]byte, 0, n*size)
	for _, f := range t.Float32 {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
	}
	for _, f := range t.Float64 {
		raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(f))
	}
	for _, v := range t.Int64 {
		switch size {
		case 8:
			raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
		case 4:
			raw = binary.LittleEndian.AppendUint32(raw, uint32(v))
		case 2:
			raw = binary.LittleEndian.AppendUint16(raw, uint16(v))
		default:
			raw = append(raw, byte(v))
		}
	}
	return appendBytesField(b, tensorRawData, raw), nil
}

func encodeValueInfo(v ValueInfo) []byte {
	var tt []byte
	if v.ElemType != Undefined {
		tt = appendVarintField(tt, tensorTypeElemType, uint64(v.ElemType))
	}
	if v.Shape != nil {
		var sb []byte
		for _, d := range v.Shape {
			var db []byte
			switch {
			case d.Param != "":
				db = appendStringField(db, dimParam, d.Param)
			case d.Value >= 0:
				db = appendVarintField(db, dimValue, uint64(d.Value))
			}
			sb = appendBytesField(sb, shapeDim, db)
		}
		tt = appendBytesField(tt, tensorTypeShape, sb)
	}
	b := appendStringField(nil, valueInfoName, v.Name)
	return appendBytesField(b, valueInfoType, appendBytesField(nil, typeTensorType, tt))
}
