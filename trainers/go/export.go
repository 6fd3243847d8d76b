package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/version"
)

// Names and versions of the ONNX graph the trainer writes.
const (
	// InputName is the graph input: FLOAT [batch, width], width the number of values of one
	// input (784 for Fashion-MNIST).
	InputName = "input"
	// LogitsName is the output of the last Gemm: FLOAT [batch, classes].
	LogitsName = "logits"
	// ProbabilitiesName is Softmax(logits) along the class axis: FLOAT [batch, classes].
	ProbabilitiesName = "probabilities"
	// EmbeddingName is the output of the last hidden layer's Relu: FLOAT [batch, hidden],
	// the features the last Gemm classifies, for the exporter's embedding drift signal.
	// The metadata key modelrepo.MetadataEmbeddingOutput names it.
	EmbeddingName = "embedding"
	// BatchParam is the symbolic name of the batch dimension.
	BatchParam = "batch"
	// Opset is the ai.onnx operator set version the graph uses.
	Opset = 13
	// IRVersion is the ONNX IR version written (ONNX 1.10 to 1.12; what opset 13 needs and
	// every current runtime reads).
	IRVersion = 8
	// MetadataClasses is the metadata_props key holding the class names as a JSON list.
	MetadataClasses = "classes"
)

// Metadata keys the trainer adds besides MetadataClasses.
const (
	metadataModel         = "edgeloop.model"
	metadataBaseVersion   = "edgeloop.base_version"
	metadataPreprocessing = "edgeloop.preprocessing"
)

// fashionPreprocessing is the preprocessing metadata of a model trained on Fashion-MNIST.
const fashionPreprocessing = "28x28 grey levels divided by 255, row-major, flattened to 784"

// ToONNX describes net as an ONNX model: per layer i (from 1) the initializers fc<i>.weight
// [out, in] and fc<i>.bias [out] and a Gemm(transB=1) node, a Relu after each but the last,
// the last Gemm writing "logits" and a Softmax(axis=1) writing "probabilities". Both are graph
// outputs, so a runtime can be configured to read either. A network with a hidden layer also
// has the last hidden Relu as the output "embedding", named by the edgeloop.embedding_output
// metadata. preprocessing says in words what an
// input is (Data.Preprocessing); empty, Fashion-MNIST's.
func ToONNX(net *Network, classes []string, model, baseVersion, preprocessing string) (*onnx.Model, error) {
	if preprocessing == "" {
		preprocessing = fashionPreprocessing
	}
	if len(classes) != net.Classes() {
		return nil, fmt.Errorf("to onnx: %d class names for %d outputs", len(classes), net.Classes())
	}
	names, err := json.Marshal(classes)
	if err != nil {
		return nil, fmt.Errorf("to onnx: %w", err)
	}
	m := &onnx.Model{
		IRVersion:       IRVersion,
		ProducerName:    "edgeloop",
		ProducerVersion: version.Get().Version,
		Opsets:          []onnx.Opset{{Version: Opset}},
		Metadata: map[string]string{
			MetadataClasses:       string(names),
			metadataModel:         model,
			metadataPreprocessing: preprocessing,
		},
		Graph: onnx.Graph{
			Name: "edgeloop_mlp",
			Inputs: []onnx.ValueInfo{{Name: InputName, ElemType: onnx.Float,
				Shape: []onnx.Dim{{Value: -1, Param: BatchParam}, {Value: int64(net.Inputs())}}}},
		},
	}
	if baseVersion != "" {
		m.Metadata[metadataBaseVersion] = baseVersion
	}
	prev := InputName
	for i, l := range net.Layers {
		fc := "fc" + strconv.Itoa(i+1)
		out := fc
		if i == len(net.Layers)-1 {
			out = LogitsName
		}
		m.Graph.Initializers = append(m.Graph.Initializers,
			onnx.Tensor{Name: fc + ".weight", DataType: onnx.Float, Dims: []int64{int64(l.Out), int64(l.In)}, Float32: l.W},
			onnx.Tensor{Name: fc + ".bias", DataType: onnx.Float, Dims: []int64{int64(l.Out)}, Float32: l.B})
		m.Graph.Nodes = append(m.Graph.Nodes, onnx.Node{
			Name: fc, OpType: "Gemm", Inputs: []string{prev, fc + ".weight", fc + ".bias"}, Outputs: []string{out},
			Attrs: map[string]onnx.Attribute{"transB": {Type: onnx.AttrInt, Int: 1}},
		})
		prev = out
		if i < len(net.Layers)-1 {
			relu := "relu" + strconv.Itoa(i+1)
			if i == len(net.Layers)-2 {
				relu = EmbeddingName
			}
			m.Graph.Nodes = append(m.Graph.Nodes, onnx.Node{Name: relu, OpType: "Relu", Inputs: []string{prev}, Outputs: []string{relu}})
			prev = relu
		}
	}
	m.Graph.Nodes = append(m.Graph.Nodes, onnx.Node{
		Name: "softmax", OpType: "Softmax", Inputs: []string{LogitsName}, Outputs: []string{ProbabilitiesName},
		Attrs: map[string]onnx.Attribute{"axis": {Type: onnx.AttrInt, Int: 1}},
	})
	outShape := []onnx.Dim{{Value: -1, Param: BatchParam}, {Value: int64(net.Classes())}}
	m.Graph.Outputs = []onnx.ValueInfo{
		{Name: LogitsName, ElemType: onnx.Float, Shape: outShape},
		{Name: ProbabilitiesName, ElemType: onnx.Float, Shape: outShape},
	}
	if n := len(net.Layers); n > 1 {
		m.Metadata[modelrepo.MetadataEmbeddingOutput] = EmbeddingName
		m.Graph.Outputs = append(m.Graph.Outputs, onnx.ValueInfo{Name: EmbeddingName, ElemType: onnx.Float,
			Shape: []onnx.Dim{{Value: -1, Param: BatchParam}, {Value: int64(net.Layers[n-2].Out)}}})
	}
	return m, nil
}

// FromONNX reads back a network and its class names from a model ToONNX wrote. It follows the
// Gemm nodes in order and accepts nothing else, so it is a check of the trainer's output, not
// a general ONNX importer (the exporter's runtime is that).
func FromONNX(m *onnx.Model) (*Network, []string, error) {
	var classes []string
	if err := json.Unmarshal([]byte(m.Metadata[MetadataClasses]), &classes); err != nil {
		return nil, nil, fmt.Errorf("from onnx: metadata %q: %w", MetadataClasses, err)
	}
	net := &Network{}
	for _, n := range m.Graph.Nodes {
		if n.OpType != "Gemm" {
			continue
		}
		if n.AttrInt("transB", 0) != 1 || len(n.Inputs) != 3 {
			return nil, nil, fmt.Errorf("from onnx: node %q is not a Gemm with transB=1 and a bias", n.Name)
		}
		w, b := m.Graph.Initializer(n.Inputs[1]), m.Graph.Initializer(n.Inputs[2])
		if w == nil || b == nil || len(w.Dims) != 2 || len(b.Dims) != 1 || b.Dims[0] != w.Dims[0] {
			return nil, nil, fmt.Errorf("from onnx: node %q: weight and bias initializers missing or misshapen", n.Name)
		}
		net.Layers = append(net.Layers, Layer{In: int(w.Dims[1]), Out: int(w.Dims[0]), W: w.Float32, B: b.Float32})
	}
	if len(net.Layers) == 0 {
		return nil, nil, errors.New("from onnx: no Gemm nodes")
	}
	if len(classes) != net.Classes() {
		return nil, nil, fmt.Errorf("from onnx: %d class names for %d outputs", len(classes), net.Classes())
	}
	return net, classes, nil
}
