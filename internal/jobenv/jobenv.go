// Package jobenv names the job contract's environment (docs/job-backends.md): the variables a
// job backend sets and a training or evaluation job reads. It has no dependencies, so a job
// (`edgeloop train`, `edgeloop evaluate`, a user's container built from this module) reads
// them without linking the backends and their Kubernetes client.
package jobenv

// The contract's variables. BaseModel is set only when the job has a base version's files to
// start from, so a job that fine-tunes must treat its absence as "train from scratch".
const (
	// Model names the model to train.
	Model = "EDGELOOP_MODEL"
	// BaseVersion is the version retrained from ("0": none).
	BaseVersion = "EDGELOOP_BASE_VERSION"
	// DatasetManifest is where the dataset manifest is (for an evaluation job: the request).
	DatasetManifest = "EDGELOOP_DATASET_MANIFEST"
	// Output is where the job writes its outputs.
	Output = "EDGELOOP_OUTPUT"
	// JobID is the controller's ID of the job.
	JobID = "EDGELOOP_JOB_ID"
	// BaseModel is where the base version's files are.
	BaseModel = "EDGELOOP_BASE_MODEL"
)

// All lists every variable of the contract, the optional ones included.
func All() []string {
	return []string{Model, BaseVersion, DatasetManifest, Output, JobID, BaseModel}
}
