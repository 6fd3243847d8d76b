package demo

import (
	"time"
)

// Point is one node's traffic over one sampling interval of the demo.
type Point struct {
	// T is the end of the interval, from the demo's start.
	T time.Duration `json:"t"`
	// Requests is the number of images classified in the interval; Accuracy and Confidence
	// (the mean top-1 probability) are over them, NaN when there were none.
	Requests   int     `json:"requests"`
	Accuracy   float64 `json:"accuracy"`
	Confidence float64 `json:"confidence"`
	// PSI is the node's confidence drift as its exporter reports it (NaN when unknown).
	PSI float64 `json:"psi"`
	// Estimated is the node's label-free accuracy estimate as its exporter reports it
	// (edgeloop_estimated_accuracy, docs/drift.md; NaN when unknown).
	Estimated float64 `json:"estimated"`
	// Version is the model version that answered last.
	Version string `json:"version"`
	// Captured and Spool are the node's captured samples so far and its spool's records now.
	Captured int `json:"captured"`
	Spool    int `json:"spool"`
}

// SignalFired is a drift signal's first crossing of its alert's threshold on a drifted node.
type SignalFired struct {
	// Signal names it as docs/drift.md does: confidence PSI, class mix, input mean, input
	// spread, input sketch.
	Signal string `json:"signal"`
	Node   string `json:"node"`
	// After is how long after the drift onset it crossed; Value is the value it crossed with.
	After time.Duration `json:"after"`
	Value float64       `json:"value"`
}

// NodeSeries is one simulated edge node's points, in time order.
type NodeSeries struct {
	Node string `json:"node"`
	// Drifted is true for nodes whose input stream is shifted after the drift onset.
	Drifted bool    `json:"drifted"`
	Points  []Point `json:"points"`
}

// Event kinds.
const (
	EventDrift     = "drift"     // drift injected on the drifted nodes
	EventJob       = "job"       // a retrain job started
	EventGate      = "gate"      // the gate decided (Text says how)
	EventPublished = "published" // a version was published
	EventServing   = "serving"   // a node started answering with a new version
	EventSignal    = "signal"    // a drift signal crossed its alert's threshold on a drifted node
	EventEnd       = "end"       // the demo ended
)

// Event is something that happened, to mark on the plots.
type Event struct {
	T    time.Duration `json:"t"`
	Kind string        `json:"kind"`
	// Node is the node concerned, when one is.
	Node string `json:"node,omitempty"`
	Text string `json:"text"`
}

// Timeline is the whole run: every node's series and the events.
type Timeline struct {
	Started time.Time    `json:"started"`
	Nodes   []NodeSeries `json:"nodes"`
	Events  []Event      `json:"events"`
}

// Summary is the demo's result, printed at the end and written into the report.
type Summary struct {
	// OK is true when the drifted nodes recovered; Reason says why not otherwise.
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
	// AccuracyBefore, AccuracyDrift and AccuracyAfter are the drifted nodes' accuracy before
	// the drift, under it with the old model, and on the recovered model (on images the
	// retrain did not train on); AccuracyClean is the undrifted nodes' accuracy on the
	// recovered model, on the probe images, which are never labelled.
	AccuracyBefore float64 `json:"accuracy_before"`
	AccuracyDrift  float64 `json:"accuracy_drift"`
	AccuracyAfter  float64 `json:"accuracy_after"`
	AccuracyClean  float64 `json:"accuracy_clean"`
	// EstimatedBefore, EstimatedDrift and EstimatedAfter are the drifted nodes' label-free
	// accuracy estimate (edgeloop_estimated_accuracy) over the same three phases, the mean of
	// the sampled gauge: what an operator without labels saw. NaN when the exporters gave none.
	EstimatedBefore float64 `json:"estimated_before"`
	EstimatedDrift  float64 `json:"estimated_drift"`
	EstimatedAfter  float64 `json:"estimated_after"`
	// Signals are the drift signals that crossed their alert's threshold on a drifted node
	// after the onset, earliest first.
	Signals []SignalFired `json:"signals,omitempty"`
	// RecoveryTarget is the share of the lost accuracy the drifted nodes had to regain
	// (Config.RecoveryShare); Regained is the share they regained on the last version served,
	// on images not trained on.
	RecoveryTarget float64 `json:"recovery_target"`
	Regained       float64 `json:"regained"`
	// AccuracyDriftFresh is the drifted nodes' accuracy under drift with the old model on the
	// images AccuracyAfter counts (the probes, never labelled), a like-for-like comparison;
	// FreshImages is how many classifications AccuracyAfter counts.
	AccuracyDriftFresh float64 `json:"accuracy_drift_fresh"`
	FreshImages        int     `json:"fresh_images"`
	// Requests counts the images classified; Captured the samples captured at the edge;
	// Labelled those the labeller labelled; UplinkBytes the bytes the nodes sent to the
	// collector; ShardBytes the bytes the collector uploaded as shards.
	Requests int `json:"requests"`
	Captured int `json:"captured"`
	Labelled int `json:"labelled"`
	// Withheld counts captured samples of probe images, which the labeller left unlabelled.
	Withheld    int   `json:"withheld,omitempty"`
	UplinkBytes int64 `json:"uplink_bytes"`
	ShardBytes  int64 `json:"shard_bytes"`
	// Model is the kind of model (ModelMLP or ModelCNN).
	Model string `json:"model,omitempty"`
	// BaseVersion and NewVersion are the model versions before and after the retrain.
	BaseVersion string `json:"base_version"`
	NewVersion  string `json:"new_version"`
	// Gate is the gate's reason, in words.
	Gate string `json:"gate"`
	// TimeToRecover is from the drift onset to the first answer of the new version on a
	// drifted node; BaseTraining is how long the base model took to train (0: it existed).
	TimeToRecover time.Duration `json:"time_to_recover"`
	BaseTraining  time.Duration `json:"base_training"`
	// RetrainJob is from the promoted job's start to its promotion: training, gate and
	// publication (0: none promoted).
	RetrainJob time.Duration `json:"retrain_job,omitempty"`
	// Duration is the whole demo's.
	Duration time.Duration `json:"duration"`
}
