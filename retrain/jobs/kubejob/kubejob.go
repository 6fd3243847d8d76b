// Package kubejob is the kubernetes job backend: each job is a batch/v1 Job running one pod,
// created and watched through client-go (docs/job-backend-kubernetes.md). It implements the
// contract of package jobs and passes jobstest's conformance suite; it is the only part of
// the retrain controller that links client-go.
package kubejob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// The labels the kubernetes backend puts on every Job and pod it creates. The job ID label is
// what Start recognises its own Job by after a lost create answer; the others let an operator
// select edgeloop's training pods (kubectl get pods -l app.kubernetes.io/name=edgeloop-train).
const (
	LabelName      = "app.kubernetes.io/name"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelJobID     = "edgeloop.io/job-id"
	LabelModel     = "edgeloop.io/model"
)

// The values of LabelName and LabelManagedBy, and the name of the training
// container in the pod.
const (
	AppName       = "edgeloop-train"
	ManagedBy     = "edgeloop-retrain"
	ContainerName = "train"
)

// backendName is the backend's name in the configuration and in Ref.Backend.
const backendName = "kubernetes"

// logTailLines is how many lines of the pod's log Wait asks the API server for; the result
// is cut to LogTailBytes anyway, so this only bounds what crosses the network.
const logTailLines = 400

// detailTimeout bounds collecting a finished Job's exit code and log: both are nice to
// have, and a log stream that hangs must not keep Wait from reporting a result it already has.
const detailTimeout = 30 * time.Second

// warnEvery is how often Wait repeats its warning while the API server keeps failing: once
// per failure would be 720 lines an hour at the default poll interval.
const warnEvery = time.Minute

// Config is the kubernetes backend's configuration (the `backend.kubernetes:`
// section of retrain.yaml).
type Config struct {
	// Kubeconfig is the kubeconfig file to use; empty uses the in-cluster service account,
	// or outside a cluster $KUBECONFIG or ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespace is where the Jobs are created.
	Namespace string `yaml:"namespace"`
	// Image is the training container's image. It has no default: the image that holds the
	// user's training code (or edgeloop's) is the deployment's choice.
	Image string `yaml:"image"`
	// Command replaces the image's entrypoint; an empty list keeps the entrypoint.
	Command []string `yaml:"command"`
	// Args are the container's arguments.
	Args []string `yaml:"args"`
	// Env is extra environment for the container, next to the job contract's variables
	// (which it may not override).
	Env map[string]string `yaml:"env"`
	// Resources is what the training container requests.
	Resources Resources `yaml:"resources"`
	// NodeSelector restricts the nodes the pod may run on.
	NodeSelector map[string]string `yaml:"node_selector"`
	// Tolerations let the pod run on tainted nodes (GPU nodes often are).
	Tolerations []Toleration `yaml:"tolerations"`
	// ServiceAccount is the pod's service account; empty is the namespace's default. It is
	// how a job usually gets object-store credentials (IRSA, workload identity).
	ServiceAccount string `yaml:"service_account"`
	// ImagePullSecrets names the secrets used to pull Image.
	ImagePullSecrets []string `yaml:"image_pull_secrets"`
	// BackoffLimit is how many times Kubernetes retries a failed pod. The default 0 reports a
	// training failure instead of repeating it blindly: a deterministic failure (bad data, a
	// bug) would fail the same way each time, and the controller decides what happens next.
	BackoffLimit int32 `yaml:"backoff_limit"`
	// TTLAfterFinished is how long a finished Job (and its pods and log) stays before
	// Kubernetes deletes it; 0 keeps finished Jobs until someone deletes them.
	TTLAfterFinished time.Duration `yaml:"ttl_after_finished"`
	// PollInterval is how often Wait asks for the Job's status.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Labels are extra labels on the Job and its pods.
	Labels map[string]string `yaml:"labels"`
}

// Resources is the training container's resource requests.
type Resources struct {
	// GPUs is the number of GPUs, the container's nvidia.com/gpu limit; 0 asks for none.
	GPUs int `yaml:"gpus"`
	// CPU is the CPU request as a Kubernetes quantity ("4", "500m"); empty requests none.
	// It is not a limit: a CPU limit throttles data loading and buys nothing for a job that
	// has the node's cores to itself.
	CPU string `yaml:"cpu"`
	// Memory is the memory request and limit as a Kubernetes quantity ("16Gi"); empty sets
	// neither. Request and limit are equal so that the pod is not the first evicted when the
	// node runs short.
	Memory string `yaml:"memory"`
}

// Toleration is one toleration of the pod (a subset of Kubernetes' Toleration).
type Toleration struct {
	// Key is the taint key; empty with operator Exists tolerates every taint.
	Key string `yaml:"key"`
	// Operator is Equal (the default) or Exists.
	Operator string `yaml:"operator"`
	// Value is the taint value Equal compares with.
	Value string `yaml:"value"`
	// Effect is NoSchedule, PreferNoSchedule or NoExecute; empty matches every effect.
	Effect string `yaml:"effect"`
}

// DefaultConfig returns the kubernetes backend's defaults: namespace "default", the
// command `edgeloop train`, no retries, finished Jobs kept for an hour, polled every 5s. Image
// must still be set.
func DefaultConfig() Config {
	return Config{
		Namespace:        "default",
		Command:          []string{"edgeloop", "train"},
		BackoffLimit:     0,
		TTLAfterFinished: time.Hour,
		PollInterval:     5 * time.Second,
	}
}

// minTTL is the shortest ttl_after_finished allowed: the Job must outlive the poll that
// sees it finish, or Wait finds it gone and can only report that it no longer exists.
const minTTL = time.Minute

// reservedLabels are the labels the backend sets itself; configured labels may not
// replace them, or Start would no longer recognise its own Jobs.
var reservedLabels = []string{LabelName, LabelManagedBy, LabelJobID, LabelModel}

// Validate reports every invalid setting, naming it by its YAML key.
func (c Config) Validate() error {
	var errs []error
	if c.Namespace == "" {
		errs = append(errs, config.Errorf("namespace", "must not be empty"))
	} else if len(content.IsDNS1123Label(c.Namespace)) > 0 {
		errs = append(errs, config.Errorf("namespace", "must be a DNS label (at most 63 of a-z, 0-9, '-', starting and ending with a letter or digit), got %q", c.Namespace))
	}
	if c.Image == "" {
		errs = append(errs, config.Errorf("image", "must name the training image"))
	}
	for i, s := range c.Command {
		if s == "" {
			errs = append(errs, config.Errorf(fmt.Sprintf("command[%d]", i), "must not be empty"))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		switch {
		case strings.HasPrefix(k, "EDGELOOP_"):
			errs = append(errs, config.Errorf("env", "%q: EDGELOOP_ variables are the job contract's and set by the backend", k))
		case len(validation.IsEnvVarName(k)) > 0:
			errs = append(errs, config.Errorf("env", "%q is not a valid environment variable name", k))
		}
	}
	errs = append(errs, config.Nest("resources", c.Resources.validate()))
	errs = append(errs, validateLabels("node_selector", c.NodeSelector, false)...)
	for i, t := range c.Tolerations {
		errs = append(errs, config.Nest(fmt.Sprintf("tolerations[%d]", i), t.validate()))
	}
	if c.ServiceAccount != "" && len(content.IsDNS1123Subdomain(c.ServiceAccount)) > 0 {
		errs = append(errs, config.Errorf("service_account", "%q is not a valid service account name", c.ServiceAccount))
	}
	for i, s := range c.ImagePullSecrets {
		if len(content.IsDNS1123Subdomain(s)) > 0 {
			errs = append(errs, config.Errorf(fmt.Sprintf("image_pull_secrets[%d]", i), "%q is not a valid secret name", s))
		}
	}
	if c.BackoffLimit < 0 {
		errs = append(errs, config.Errorf("backoff_limit", "must not be negative, got %d", c.BackoffLimit))
	}
	switch {
	case c.TTLAfterFinished < 0:
		errs = append(errs, config.Errorf("ttl_after_finished", "must not be negative, got %v", c.TTLAfterFinished))
	case c.TTLAfterFinished > 0 && c.TTLAfterFinished < minTTL:
		errs = append(errs, config.Errorf("ttl_after_finished", "must be 0 (keep finished Jobs) or at least %v, so the Job outlives the poll that sees it finish; got %v", minTTL, c.TTLAfterFinished))
	case c.TTLAfterFinished > math.MaxInt32*time.Second:
		errs = append(errs, config.Errorf("ttl_after_finished", "must be at most %v, got %v", math.MaxInt32*time.Second, c.TTLAfterFinished))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, config.Errorf("poll_interval", "must be positive, got %v", c.PollInterval))
	}
	errs = append(errs, validateLabels("labels", c.Labels, true)...)
	return errors.Join(errs...)
}

// validateLabels checks a map of label keys and values; reserved refuses the labels the
// backend sets itself.
func validateLabels(field string, m map[string]string, reserved bool) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch {
		case len(content.IsLabelKey(k)) > 0:
			errs = append(errs, config.Errorf(field, "%q is not a valid label key", k))
		case len(content.IsLabelValue(m[k])) > 0:
			errs = append(errs, config.Errorf(field, "%q: %q is not a valid label value (at most 63 of A-Z, a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)", k, m[k]))
		case reserved && slices.Contains(reservedLabels, k):
			errs = append(errs, config.Errorf(field, "%q is set by the backend", k))
		}
	}
	return errs
}

func (r Resources) validate() error {
	var errs []error
	if r.GPUs < 0 {
		errs = append(errs, config.Errorf("gpus", "must not be negative, got %d", r.GPUs))
	}
	for _, q := range []struct{ field, value string }{{"cpu", r.CPU}, {"memory", r.Memory}} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err != nil {
			errs = append(errs, config.Errorf(q.field, "%q is not a Kubernetes quantity (like 4, 500m, 16Gi)", q.value))
		} else if v.Sign() <= 0 {
			errs = append(errs, config.Errorf(q.field, "must be positive, got %q", q.value))
		}
	}
	return errors.Join(errs...)
}

func (t Toleration) validate() error {
	var errs []error
	switch t.Operator {
	case "", string(corev1.TolerationOpEqual):
		if t.Key == "" {
			errs = append(errs, config.Errorf("key", "must not be empty with operator Equal (use Exists to tolerate every taint)"))
		}
	case string(corev1.TolerationOpExists):
		if t.Value != "" {
			errs = append(errs, config.Errorf("value", "must be empty with operator Exists, got %q", t.Value))
		}
	default:
		errs = append(errs, config.Errorf("operator", "must be Equal or Exists, got %q", t.Operator))
	}
	if t.Key != "" && len(content.IsLabelKey(t.Key)) > 0 {
		errs = append(errs, config.Errorf("key", "%q is not a valid taint key", t.Key))
	}
	switch corev1.TaintEffect(t.Effect) {
	case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		errs = append(errs, config.Errorf("effect", "must be NoSchedule, PreferNoSchedule, NoExecute or empty, got %q", t.Effect))
	}
	return errors.Join(errs...)
}

// Client builds a client for cfg: from cfg.Kubeconfig when it is set, else from the
// in-cluster service account, else (outside a cluster) from $KUBECONFIG or ~/.kube/config.
func Client(cfg Config) (kubernetes.Interface, error) {
	var (
		rc  *rest.Config
		err error
	)
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
				clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client config: %w", err)
	}
	rc.UserAgent = "edgeloop-retrain"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client: %w", err)
	}
	return cs, nil
}

// Backend is the kubernetes backend: each job is a batch/v1 Job running one pod.
type Backend struct {
	cfg    Config
	client kubernetes.Interface
	logger *slog.Logger
}

var _ jobs.Backend = (*Backend)(nil)

// New returns the kubernetes backend, talking to the cluster through client (a real
// one from Client, or client-go's fake clientset in tests).
func New(cfg Config, client kubernetes.Interface, logger *slog.Logger) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes: config: %w", err)
	}
	if client == nil {
		return nil, errors.New("kubernetes: no client")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{cfg: cfg, client: client, logger: logger.With("backend", backendName)}, nil
}

// Name returns "kubernetes".
func (k *Backend) Name() string { return backendName }

// Start creates the spec's Job. Its name is derived from the spec's ID alone, so a Start
// repeated after a create whose answer was lost finds the Job it made and adopts it instead of
// failing or starting a second one.
func (k *Backend) Start(ctx context.Context, spec jobs.Spec) (jobs.Ref, error) {
	if err := spec.Validate(); err != nil {
		return jobs.Ref{}, fmt.Errorf("kubernetes: start: %w", err)
	}
	job := k.job(spec)
	ns, name := job.Namespace, job.Name
	ref := jobs.Ref{Backend: backendName, ID: ns + "/" + name}
	_, err := k.client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	switch {
	case err == nil:
		k.logger.Info("created job", "job_id", spec.ID, "job", ref.ID)
		return ref, nil
	case !apierrors.IsAlreadyExists(err):
		return jobs.Ref{}, fmt.Errorf("kubernetes: start %s: create job %s: %w", spec.ID, ref.ID, err)
	}
	existing, err := k.client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return jobs.Ref{}, fmt.Errorf("kubernetes: start %s: job %s exists, and reading it failed: %w", spec.ID, ref.ID, err)
	}
	if !owns(existing, spec.ID) {
		return jobs.Ref{}, fmt.Errorf("kubernetes: start %s: job %s exists and is not this job's (its %s label is %q)",
			spec.ID, ref.ID, LabelJobID, existing.Labels[LabelJobID])
	}
	if existing.DeletionTimestamp != nil {
		// Adopting it would only have Wait report it gone; once it is, a retried Start
		// creates the Job afresh.
		return jobs.Ref{}, fmt.Errorf("kubernetes: start %s: job %s is still being deleted; retry when it is gone", spec.ID, ref.ID)
	}
	k.logger.Info("adopted existing job", "job_id", spec.ID, "job", ref.ID)
	return ref, nil
}

// owns reports whether job is the one Start makes for the job ID id. The label is
// label-safe and may have lost characters; the annotation has the exact ID.
func owns(job *batchv1.Job, id string) bool {
	if job.Labels[LabelJobID] != labelValue(id) {
		return false
	}
	a, ok := job.Annotations[LabelJobID]
	return !ok || a == id
}

// job builds the Job for spec.
func (k *Backend) job(spec jobs.Spec) *batchv1.Job {
	c := k.cfg
	labels := map[string]string{}
	maps.Copy(labels, c.Labels)
	labels[LabelName] = AppName
	labels[LabelManagedBy] = ManagedBy
	labels[LabelJobID] = labelValue(spec.ID)
	labels[LabelModel] = labelValue(spec.Model)
	// Label values are cut to what Kubernetes allows; the annotations keep the exact values.
	annotations := map[string]string{
		LabelJobID: spec.ID,
		LabelModel: spec.Model,
	}

	contract := spec.Env()
	env := make([]corev1.EnvVar, 0, len(contract)+len(c.Env))
	for _, name := range slices.Sorted(maps.Keys(contract)) {
		env = append(env, corev1.EnvVar{Name: name, Value: contract[name]})
	}
	for _, name := range slices.Sorted(maps.Keys(c.Env)) {
		env = append(env, corev1.EnvVar{Name: name, Value: c.Env[name]})
	}

	container := corev1.Container{
		Name:    ContainerName,
		Image:   c.Image,
		Command: slices.Clone(c.Command),
		Args:    slices.Clone(c.Args),
		Env:     env,
		// The log's end becomes the termination message of a failed container, so the
		// reason is in the pod's status even where the controller may not read logs (no
		// pods/log permission).
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		Resources:                c.Resources.requirements(),
	}

	var tolerations []corev1.Toleration
	for _, t := range c.Tolerations {
		op := corev1.TolerationOperator(t.Operator)
		if op == "" {
			op = corev1.TolerationOpEqual
		}
		tolerations = append(tolerations, corev1.Toleration{Key: t.Key, Operator: op, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	var pullSecrets []corev1.LocalObjectReference
	for _, s := range c.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: s})
	}

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        jobName(spec.ID),
			Namespace:   c.Namespace,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(c.BackoffLimit),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels), Annotations: maps.Clone(annotations)},
				Spec: corev1.PodSpec{
					RestartPolicy:      corev1.RestartPolicyNever,
					Containers:         []corev1.Container{container},
					NodeSelector:       maps.Clone(c.NodeSelector),
					Tolerations:        tolerations,
					ServiceAccountName: c.ServiceAccount,
					ImagePullSecrets:   pullSecrets,
				},
			},
		},
	}
	if spec.Timeout > 0 {
		// Rounded up: a deadline of 0 seconds would be refused, and cutting a job short of its
		// timeout is worse than letting it run a fraction of a second longer.
		job.Spec.ActiveDeadlineSeconds = new(int64((spec.Timeout + time.Second - 1) / time.Second))
	}
	if c.TTLAfterFinished > 0 {
		job.Spec.TTLSecondsAfterFinished = new(int32((c.TTLAfterFinished + time.Second - 1) / time.Second))
	}
	return job
}

func (r Resources) requirements() corev1.ResourceRequirements {
	var req corev1.ResourceRequirements
	set := func(l *corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		if *l == nil {
			*l = corev1.ResourceList{}
		}
		(*l)[name] = q
	}
	if r.GPUs > 0 {
		// Extended resources are limits only; Kubernetes sets the request equal.
		set(&req.Limits, "nvidia.com/gpu", *resource.NewQuantity(int64(r.GPUs), resource.DecimalSI))
	}
	if r.CPU != "" {
		set(&req.Requests, corev1.ResourceCPU, resource.MustParse(r.CPU))
	}
	if r.Memory != "" {
		set(&req.Requests, corev1.ResourceMemory, resource.MustParse(r.Memory))
		set(&req.Limits, corev1.ResourceMemory, resource.MustParse(r.Memory))
	}
	return req
}

// jobName is the Job's name for the job ID id: "edgeloop-train-<id>". When that is longer
// than the 63 characters a Job name may have (its pods carry it in a label), or ends in '-',
// the name is cut and ends in a hash of the whole ID, so that two long IDs sharing a prefix
// still get different Jobs.
func jobName(id string) string {
	name := AppName + "-" + id
	if len(name) <= 63 && !strings.HasSuffix(name, "-") {
		return name
	}
	sum := sha256.Sum256([]byte(id))
	return strings.TrimRight(name[:min(len(name), 63-9)], "-") + "-" + hex.EncodeToString(sum[:4])
}

// labelValue makes s a valid label value: characters outside A-Z a-z 0-9 - _ . become
// '-', it is cut to 63 characters, and it starts and ends with a letter or digit.
func labelValue(s string) string {
	isAlnum := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	}
	v := strings.Map(func(r rune) rune {
		if isAlnum(r) || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, s)
	v = strings.TrimLeftFunc(v, func(r rune) bool { return !isAlnum(r) })
	v = v[:min(len(v), 63)]
	return strings.TrimRightFunc(v, func(r rune) bool { return !isAlnum(r) })
}

// parseRef returns the namespace and name in a Ref made by Start.
func parseRef(ref jobs.Ref) (ns, name string, err error) {
	if ref.Backend != backendName {
		return "", "", fmt.Errorf("kubernetes: ref %q is the %q backend's", ref.ID, ref.Backend)
	}
	ns, name, ok := strings.Cut(ref.ID, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("kubernetes: ref %q: want namespace/name", ref.ID)
	}
	return ns, name, nil
}

// Wait polls the Job until it has finished, and returns its status with the exit code and the
// end of the log of its newest pod. It uses only the Ref, so it re-attaches to a Job started
// by an earlier process. Failures to ask the API server are logged and retried until ctx ends:
// an API server restart must not fail a training run that is still going.
func (k *Backend) Wait(ctx context.Context, ref jobs.Ref) (jobs.Status, error) {
	ns, name, err := parseRef(ref)
	if err != nil {
		return jobs.Status{}, err
	}
	var (
		failing  int       // consecutive failed polls
		lastWarn time.Time // when the current run of failures was last logged
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return jobs.Status{}, ctx.Err()
		case <-timer.C:
		}
		job, err := k.client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return jobs.Status{State: jobs.Failed, Message: fmt.Sprintf("job %s no longer exists (deleted, or removed by its TTL before the controller saw it finish)", ref.ID)}, nil
		case err != nil:
			if ctx.Err() != nil {
				return jobs.Status{}, ctx.Err()
			}
			failing++
			if failing == 1 || time.Since(lastWarn) >= warnEvery {
				k.logger.Warn("reading job failed, retrying", "job", ref.ID, "failures", failing, "err", err)
				lastWarn = time.Now()
			}
		default:
			if failing > 0 {
				k.logger.Info("reading job works again", "job", ref.ID, "failures", failing)
				failing = 0
			}
			if st, done := jobStatus(job); done {
				k.details(ctx, ns, name, &st)
				return st, nil
			}
		}
		timer.Reset(k.cfg.PollInterval)
	}
}

// jobStatus reads a Job's final status from its conditions. Only Complete and Failed are
// final: FailureTarget and SuccessCriteriaMet come first, while pods may still be terminating
// and their exit codes and logs are not all there yet.
func jobStatus(job *batchv1.Job) (jobs.Status, bool) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			st := jobs.Status{State: jobs.Succeeded, Finished: c.LastTransitionTime.Time}
			if job.Status.CompletionTime != nil {
				st.Finished = job.Status.CompletionTime.Time
			}
			return st, true
		case batchv1.JobFailed:
			msg := c.Reason
			if c.Message != "" {
				msg = strings.TrimPrefix(msg+": "+c.Message, ": ")
			}
			if msg == "" {
				msg = "job failed"
			}
			return jobs.Status{State: jobs.Failed, Message: msg, Finished: c.LastTransitionTime.Time}, true
		}
	}
	return jobs.Status{}, false
}

// details adds the exit code and log tail of the Job's newest pod to st. Both are best effort:
// the Job's conditions already decided the outcome, and pods may be gone (TTL, node loss).
func (k *Backend) details(ctx context.Context, ns, name string, st *jobs.Status) {
	ctx, cancel := context.WithTimeout(ctx, detailTimeout)
	defer cancel()
	pod, err := k.newestPod(ctx, ns, name)
	if err != nil {
		k.logger.Warn("listing the job's pods failed; no exit code or log", "job", ns+"/"+name, "err", err)
		return
	}
	if pod == nil {
		return
	}
	var term *corev1.ContainerStateTerminated
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		term = cs.State.Terminated
		if term == nil {
			term = cs.LastTerminationState.Terminated
		}
	}
	if term != nil {
		st.ExitCode = new(int(term.ExitCode))
		if st.State == jobs.Failed {
			// OOMKilled or a signal says more than a bare exit code.
			st.Message += fmt.Sprintf(" (pod %s: container exited with code %d", pod.Name, term.ExitCode)
			if term.Reason != "" {
				st.Message += ", " + term.Reason
			}
			st.Message += ")"
		}
	}
	logTail, err := k.podLog(ctx, ns, pod.Name)
	switch {
	case err == nil:
		st.LogTail = logTail
	case term != nil && term.Message != "":
		// Where logs are not readable the termination message holds their end.
		st.LogTail = jobs.Tail(term.Message)
		k.logger.Debug("reading the pod's log failed; using its termination message", "pod", ns+"/"+pod.Name, "err", err)
	default:
		k.logger.Warn("reading the pod's log failed", "pod", ns+"/"+pod.Name, "err", err)
	}
}

// newestPod returns the Job's most recently created pod, or nil when it has none left.
func (k *Backend) newestPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	var pods []corev1.Pod
	// batch.kubernetes.io/job-name is set since Kubernetes 1.27; job-name is what older
	// clusters set (and newer ones still do).
	for _, key := range []string{batchv1.JobNameLabel, "job-name"} {
		list, err := k.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: key + "=" + name})
		if err != nil {
			return nil, err
		}
		if pods = list.Items; len(pods) > 0 {
			break
		}
	}
	if len(pods) == 0 {
		return nil, nil
	}
	newest := &pods[0]
	for i := range pods[1:] {
		p := &pods[i+1]
		if newest.CreationTimestamp.Before(&p.CreationTimestamp) ||
			newest.CreationTimestamp.Equal(&p.CreationTimestamp) && p.Name > newest.Name {
			newest = p
		}
	}
	return newest, nil
}

// podLog returns the end of the training container's log.
func (k *Backend) podLog(ctx context.Context, ns, pod string) (string, error) {
	rc, err := k.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{
		Container: ContainerName,
		TailLines: new(int64(logTailLines)),
	}).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = rc.Close() }()
	var t tailWriter
	if _, err := io.Copy(&t, rc); err != nil {
		return "", err
	}
	return jobs.Tail(string(t.buf)), nil
}

// tailWriter keeps the last 2×LogTailBytes written to it: a few very long lines must not
// make the controller hold megabytes to keep 8 KiB, and the extra room lets Tail find a line
// start.
type tailWriter struct{ buf []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	const keep = 2 * jobs.LogTailBytes
	n := len(p)
	if len(p) > keep {
		p = p[len(p)-keep:]
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - keep; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return n, nil
}

// Cancel deletes the Job and, in the background, its pods. A Job already gone is not an error.
func (k *Backend) Cancel(ctx context.Context, ref jobs.Ref) error {
	ns, name, err := parseRef(ref)
	if err != nil {
		return err
	}
	err = k.client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationBackground)})
	switch {
	case err == nil:
		k.logger.Info("deleted job", "job", ref.ID)
		return nil
	case apierrors.IsNotFound(err):
		return nil
	default:
		return fmt.Errorf("kubernetes: cancel %s: %w", ref.ID, err)
	}
}
