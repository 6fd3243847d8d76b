package kubejob

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/jobenv"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// testConfig is a valid configuration with every key set and a short poll interval.
func testConfig() Config {
	c := DefaultConfig()
	c.Namespace = "training"
	c.Image = "registry.example.com/edgeloop:1.2.3"
	c.Args = []string{"--epochs", "5"}
	c.Env = map[string]string{"AWS_REGION": "eu-west-1"}
	c.Resources = Resources{GPUs: 2, CPU: "8", Memory: "32Gi"}
	c.NodeSelector = map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
	c.Tolerations = []Toleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}}
	c.ServiceAccount = "edgeloop-train"
	c.ImagePullSecrets = []string{"registry-creds"}
	c.BackoffLimit = 1
	c.PollInterval = 10 * time.Millisecond
	c.Labels = map[string]string{"team": "vision"}
	return c
}

func testSpec(id string) jobs.Spec {
	return jobs.Spec{
		ID:              id,
		Model:           "fashion/mnist",
		BaseVersion:     7,
		DatasetManifest: "s3://edgeloop/datasets/" + id + "/manifest.json",
		Output:          "s3://edgeloop/candidates/" + id + "/",
		Timeout:         90*time.Minute + 500*time.Millisecond,
	}
}

func testBackend(t *testing.T, cfg Config, client *fake.Clientset) *Backend {
	t.Helper()
	k, err := New(cfg, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCtx bounds a test: a Wait that never ends fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type waitResult struct {
	st  jobs.Status
	err error
}

func waitAsync(ctx context.Context, k *Backend, ref jobs.Ref) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		st, err := k.Wait(ctx, ref)
		ch <- waitResult{st, err}
	}()
	return ch
}

// getSeen returns a channel closed once the Job named name has been read: the test then
// knows Wait has seen it running before changing it.
func getSeen(client *fake.Clientset, name string) <-chan struct{} {
	seen := make(chan struct{})
	var once sync.Once
	client.PrependReactor("get", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() == name {
			once.Do(func() { close(seen) })
		}
		return false, nil, nil
	})
	return seen
}

func recv(t *testing.T, ctx context.Context, ch <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		t.Fatal("Wait did not return")
		return waitResult{}
	}
}

func await(t *testing.T, ctx context.Context, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatal("Wait never read the job")
	}
}

// finish gives the Job a final condition, as the job controller does.
func finish(t *testing.T, ctx context.Context, client *fake.Clientset, ns, name string, cond batchv1.JobCondition) {
	t.Helper()
	job, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cond.Status = corev1.ConditionTrue
	job.Status.Conditions = append(job.Status.Conditions, cond)
	if cond.Type == batchv1.JobComplete {
		job.Status.CompletionTime = &cond.LastTransitionTime
	}
	if _, err := client.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// addPod adds a pod of the Job whose training container ended with code.
func addPod(t *testing.T, ctx context.Context, client *fake.Clientset, ns, job, name string, created time.Time, code int32, reason string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels:            map[string]string{batchv1.JobNameLabel: job, "job-name": job},
			CreationTimestamp: metav1.NewTime(created),
		},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name:  ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: "termination message of " + name}},
		}}},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func splitRef(t *testing.T, ref jobs.Ref) (string, string) {
	t.Helper()
	ns, name, err := parseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return ns, name
}

func TestStartCreatesJob(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	k := testBackend(t, testConfig(), client)
	spec := testSpec("job-20240101-0001")

	ref, err := k.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if want := (jobs.Ref{Backend: "kubernetes", ID: "training/edgeloop-train-job-20240101-0001"}); ref.Backend != want.Backend || ref.ID != want.ID {
		t.Fatalf("ref = %+v, want %+v", ref, want)
	}
	job, err := client.BatchV1().Jobs("training").Get(ctx, "edgeloop-train-job-20240101-0001", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	wantLabels := map[string]string{
		"app.kubernetes.io/name":       "edgeloop-train",
		"app.kubernetes.io/managed-by": "edgeloop-retrain",
		"edgeloop.io/job-id":           "job-20240101-0001",
		"edgeloop.io/model":            "fashion-mnist",
		"team":                         "vision",
	}
	for what, got := range map[string]map[string]string{"job": job.Labels, "pod template": job.Spec.Template.Labels} {
		if fmt.Sprint(got) != fmt.Sprint(wantLabels) {
			t.Errorf("%s labels = %v, want %v", what, got, wantLabels)
		}
	}
	if got := job.Annotations["edgeloop.io/model"]; got != "fashion/mnist" {
		t.Errorf("model annotation = %q, want the exact model name", got)
	}

	js := job.Spec
	if js.BackoffLimit == nil || *js.BackoffLimit != 1 {
		t.Errorf("backoffLimit = %v, want 1", js.BackoffLimit)
	}
	if js.ActiveDeadlineSeconds == nil || *js.ActiveDeadlineSeconds != 5401 {
		t.Errorf("activeDeadlineSeconds = %v, want 5401 (90m30s rounded up)", js.ActiveDeadlineSeconds)
	}
	if js.TTLSecondsAfterFinished == nil || *js.TTLSecondsAfterFinished != 3600 {
		t.Errorf("ttlSecondsAfterFinished = %v, want 3600", js.TTLSecondsAfterFinished)
	}
	ps := js.Template.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %q, want Never", ps.RestartPolicy)
	}
	if ps.ServiceAccountName != "edgeloop-train" {
		t.Errorf("serviceAccountName = %q", ps.ServiceAccountName)
	}
	if got := ps.NodeSelector["nvidia.com/gpu.product"]; got != "NVIDIA-H100-80GB-HBM3" || len(ps.NodeSelector) != 1 {
		t.Errorf("nodeSelector = %v", ps.NodeSelector)
	}
	if len(ps.Tolerations) != 1 || ps.Tolerations[0] != (corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}) {
		t.Errorf("tolerations = %+v", ps.Tolerations)
	}
	if len(ps.ImagePullSecrets) != 1 || ps.ImagePullSecrets[0].Name != "registry-creds" {
		t.Errorf("imagePullSecrets = %+v", ps.ImagePullSecrets)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	if c.Name != "train" || c.Image != "registry.example.com/edgeloop:1.2.3" {
		t.Errorf("container %q image %q", c.Name, c.Image)
	}
	if fmt.Sprint(c.Command) != "[edgeloop train]" || fmt.Sprint(c.Args) != "[--epochs 5]" {
		t.Errorf("command %q args %q", c.Command, c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	wantEnv := map[string]string{
		jobenv.Model:           "fashion/mnist",
		jobenv.BaseVersion:     "7",
		jobenv.DatasetManifest: "s3://edgeloop/datasets/job-20240101-0001/manifest.json",
		jobenv.Output:          "s3://edgeloop/candidates/job-20240101-0001/",
		jobenv.JobID:           "job-20240101-0001",
		"AWS_REGION":           "eu-west-1",
	}
	if fmt.Sprint(env) != fmt.Sprint(wantEnv) || len(c.Env) != len(wantEnv) {
		t.Errorf("env = %v, want %v", c.Env, wantEnv)
	}
	limits, requests := c.Resources.Limits, c.Resources.Requests
	for _, q := range []struct {
		what string
		list corev1.ResourceList
		name corev1.ResourceName
		want string
	}{
		{"limit", limits, "nvidia.com/gpu", "2"},
		{"limit", limits, corev1.ResourceMemory, "32Gi"},
		{"request", requests, corev1.ResourceMemory, "32Gi"},
		{"request", requests, corev1.ResourceCPU, "8"},
	} {
		got, ok := q.list[q.name]
		if !ok || got.Cmp(resource.MustParse(q.want)) != 0 {
			t.Errorf("%s %s = %v, want %s", q.name, q.what, got.String(), q.want)
		}
	}
	if _, ok := limits[corev1.ResourceCPU]; ok {
		t.Error("cpu limit set; cpu is a request only")
	}
}

func TestStartMinimal(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	cfg := DefaultConfig()
	cfg.Image = "edgeloop:dev"
	cfg.Command = nil // the image's entrypoint
	cfg.TTLAfterFinished = 0
	k := testBackend(t, cfg, client)
	spec := testSpec("j1")
	spec.Timeout = 0
	ref, err := k.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	ns, name := splitRef(t, ref)
	job, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns != "default" {
		t.Errorf("namespace %q, want default", ns)
	}
	if js := job.Spec; js.ActiveDeadlineSeconds != nil || js.TTLSecondsAfterFinished != nil || js.BackoffLimit == nil || *js.BackoffLimit != 0 {
		t.Errorf("deadline %v ttl %v backoffLimit %v, want none, none, 0", js.ActiveDeadlineSeconds, js.TTLSecondsAfterFinished, js.BackoffLimit)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if c.Command != nil || len(c.Resources.Limits) != 0 || len(c.Resources.Requests) != 0 {
		t.Errorf("command %q resources %+v, want none", c.Command, c.Resources)
	}
}

func TestStartInvalidSpec(t *testing.T) {
	k := testBackend(t, testConfig(), fake.NewClientset())
	spec := testSpec("Bad_ID")
	if _, err := k.Start(testCtx(t), spec); err == nil || !strings.HasPrefix(err.Error(), "kubernetes: start: job id") {
		t.Fatalf("err = %v, want the spec's validation error", err)
	}
}

func TestWaitSucceeds(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	k := testBackend(t, testConfig(), client)
	ref, err := k.Start(ctx, testSpec("ok"))
	if err != nil {
		t.Fatal(err)
	}
	ns, name := splitRef(t, ref)
	seen := getSeen(client, name)
	done := waitAsync(ctx, k, ref)

	await(t, ctx, seen)
	select {
	case r := <-done:
		t.Fatalf("Wait returned %+v, %v while the job runs", r.st, r.err)
	default:
	}
	finished := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	addPod(t, ctx, client, ns, name, name+"-abcde", finished.Add(-time.Hour), 0, "Completed")
	finish(t, ctx, client, ns, name, batchv1.JobCondition{Type: batchv1.JobComplete, LastTransitionTime: metav1.NewTime(finished)})

	r := recv(t, ctx, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.st.State != jobs.Succeeded || r.st.Message != "" || r.st.ExitCode == nil || *r.st.ExitCode != 0 ||
		r.st.LogTail != "fake logs" || !r.st.Finished.Equal(finished) {
		t.Fatalf("status = %+v, want succeeded, exit code 0, the fake log, finished %v", r.st, finished)
	}
}

func TestWaitFailsBackoffLimitExceeded(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	k := testBackend(t, testConfig(), client)
	ref, err := k.Start(ctx, testSpec("bad"))
	if err != nil {
		t.Fatal(err)
	}
	ns, name := splitRef(t, ref)
	seen := getSeen(client, name)
	done := waitAsync(ctx, k, ref)
	await(t, ctx, seen)

	// backoff_limit 1: two pods; the newest one's exit code is the job's.
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	addPod(t, ctx, client, ns, name, name+"-zzzzz", t0, 1, "Error")
	addPod(t, ctx, client, ns, name, name+"-aaaaa", t0.Add(time.Minute), 137, "OOMKilled")
	finish(t, ctx, client, ns, name, batchv1.JobCondition{
		Type: batchv1.JobFailed, Reason: batchv1.JobReasonBackoffLimitExceeded,
		Message: "Job has reached the specified backoff limit", LastTransitionTime: metav1.NewTime(t0.Add(2 * time.Minute)),
	})

	r := recv(t, ctx, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantMsg := "BackoffLimitExceeded: Job has reached the specified backoff limit (pod edgeloop-train-bad-aaaaa: container exited with code 137, OOMKilled)"
	if r.st.State != jobs.Failed || r.st.Message != wantMsg || r.st.ExitCode == nil || *r.st.ExitCode != 137 || r.st.LogTail != "fake logs" {
		t.Fatalf("status = %+v (exit code %v), want failed, %q, exit code 137", r.st, r.st.ExitCode, wantMsg)
	}
}

func TestWaitDeadlineExceededWithoutPods(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	k := testBackend(t, testConfig(), client)
	ref, err := k.Start(ctx, testSpec("slow"))
	if err != nil {
		t.Fatal(err)
	}
	ns, name := splitRef(t, ref)
	finish(t, ctx, client, ns, name, batchv1.JobCondition{
		Type: batchv1.JobFailed, Reason: batchv1.JobReasonDeadlineExceeded, Message: "Job was active longer than specified deadline",
	})
	st, err := k.Wait(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || st.Message != "DeadlineExceeded: Job was active longer than specified deadline" || st.ExitCode != nil || st.LogTail != "" {
		t.Fatalf("status = %+v", st)
	}
}

func TestWaitReattaches(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	first := testBackend(t, testConfig(), client)
	ref, err := first.Start(ctx, testSpec("restart"))
	if err != nil {
		t.Fatal(err)
	}

	// A later controller process: a new backend, possibly configured for another namespace,
	// with only the stored Ref.
	cfg := testConfig()
	cfg.Namespace = "elsewhere"
	second := testBackend(t, cfg, client)
	ns, name := splitRef(t, ref)
	seen := getSeen(client, name)
	done := waitAsync(ctx, second, ref)
	await(t, ctx, seen)
	addPod(t, ctx, client, ns, name, name+"-p", time.Now(), 0, "Completed")
	finish(t, ctx, client, ns, name, batchv1.JobCondition{Type: batchv1.JobComplete, LastTransitionTime: metav1.Now()})

	r := recv(t, ctx, done)
	if r.err != nil || r.st.State != jobs.Succeeded || r.st.ExitCode == nil || *r.st.ExitCode != 0 {
		t.Fatalf("status = %+v, err = %v, want succeeded with exit code 0", r.st, r.err)
	}
}

func TestStartRefusesForeignJob(t *testing.T) {
	ctx := testCtx(t)
	for _, labels := range []map[string]string{
		nil,
		{LabelJobID: "someone-else"},
	} {
		foreign := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "edgeloop-train-taken", Namespace: "training", Labels: labels}}
		client := fake.NewClientset(foreign)
		k := testBackend(t, testConfig(), client)
		_, err := k.Start(ctx, testSpec("taken"))
		want := fmt.Sprintf("kubernetes: start taken: job training/edgeloop-train-taken exists and is not this job's (its edgeloop.io/job-id label is %q)", labels[LabelJobID])
		if err == nil || err.Error() != want {
			t.Errorf("labels %v: err = %v, want %s", labels, err, want)
		}
	}
}

func TestStartRefusesJobBeingDeleted(t *testing.T) {
	now := metav1.Now()
	dying := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
		Name: "edgeloop-train-again", Namespace: "training", DeletionTimestamp: &now, Finalizers: []string{"foregroundDeletion"},
		Labels: map[string]string{LabelJobID: "again"},
	}}
	k := testBackend(t, testConfig(), fake.NewClientset(dying))
	_, err := k.Start(testCtx(t), testSpec("again"))
	want := "kubernetes: start again: job training/edgeloop-train-again is still being deleted; retry when it is gone"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestStartCreateError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(batchv1.Resource("jobs"), "", errors.New("no RBAC"))
	})
	k := testBackend(t, testConfig(), client)
	_, err := k.Start(testCtx(t), testSpec("denied"))
	if err == nil || !apierrors.IsForbidden(err) || !strings.HasPrefix(err.Error(), "kubernetes: start denied: create job training/edgeloop-train-denied: ") {
		t.Fatalf("err = %v, want the wrapped Forbidden error", err)
	}
}

func TestCancelDeletes(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	k := testBackend(t, testConfig(), client)
	ref, err := k.Start(ctx, testSpec("cancel-me"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Cancel(ctx, ref); err != nil {
		t.Fatal(err)
	}
	ns, name := splitRef(t, ref)
	if _, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("job still there after Cancel: %v", err)
	}
	var deletes int
	for _, a := range client.Actions() {
		if d, ok := a.(k8stesting.DeleteActionImpl); ok && d.GetResource().Resource == "jobs" {
			deletes++
			if p := d.DeleteOptions.PropagationPolicy; p == nil || *p != metav1.DeletePropagationBackground {
				t.Errorf("propagation policy %v, want Background (so the pods go too)", p)
			}
		}
	}
	if deletes != 1 {
		t.Errorf("%d deletes, want 1", deletes)
	}
	if err := k.Cancel(ctx, ref); err != nil {
		t.Fatalf("cancelling a deleted job: %v", err)
	}
}

func TestWaitDeletedJob(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	k := testBackend(t, testConfig(), client)
	ref, err := k.Start(ctx, testSpec("gone"))
	if err != nil {
		t.Fatal(err)
	}
	ns, name := splitRef(t, ref)
	seen := getSeen(client, name)
	done := waitAsync(ctx, k, ref)
	await(t, ctx, seen)
	if err := client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r := recv(t, ctx, done)
	want := "job training/edgeloop-train-gone no longer exists (deleted, or removed by its TTL before the controller saw it finish)"
	if r.err != nil || r.st.State != jobs.Failed || r.st.Message != want {
		t.Fatalf("status = %+v, err = %v, want failed: %s", r.st, r.err, want)
	}
}

func TestWaitRetriesTransientErrors(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	k := testBackend(t, testConfig(), client)
	ref, err := k.Start(ctx, testSpec("flaky"))
	if err != nil {
		t.Fatal(err)
	}
	ns, name := splitRef(t, ref)
	finish(t, ctx, client, ns, name, batchv1.JobCondition{Type: batchv1.JobComplete})

	var gets atomic.Int32
	client.PrependReactor("get", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		switch gets.Add(1) {
		case 1:
			return true, nil, apierrors.NewServiceUnavailable("apiserver restarting")
		case 2:
			return true, nil, errors.New("connection refused")
		case 3:
			return true, nil, apierrors.NewTooManyRequests("slow down", 1)
		}
		return false, nil, nil
	})
	st, err := k.Wait(ctx, ref)
	if err != nil {
		t.Fatalf("Wait failed on transient errors: %v", err)
	}
	if st.State != jobs.Succeeded {
		t.Fatalf("status = %+v, want succeeded", st)
	}
	if n := gets.Load(); n != 4 {
		t.Fatalf("%d gets, want 3 failed and 1 good", n)
	}
}

func TestWaitContextEnds(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("get", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("down")
	})
	k := testBackend(t, testConfig(), client)
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	_, err := k.Wait(ctx, jobs.Ref{Backend: "kubernetes", ID: "training/edgeloop-train-x"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
}

func TestBadRef(t *testing.T) {
	k := testBackend(t, testConfig(), fake.NewClientset())
	ctx := testCtx(t)
	for _, ref := range []jobs.Ref{
		{Backend: "local", ID: "training/x"},
		{Backend: "kubernetes", ID: "x"},
		{Backend: "kubernetes", ID: "/x"},
		{Backend: "kubernetes", ID: "a/b/c"},
	} {
		if _, err := k.Wait(ctx, ref); err == nil {
			t.Errorf("Wait(%+v): no error", ref)
		}
		if err := k.Cancel(ctx, ref); err == nil {
			t.Errorf("Cancel(%+v): no error", ref)
		}
	}
}

// The log tail is bounded however long the log is; where the log cannot be read the
// termination message (the log's end, by FallbackToLogsOnError) stands in for it.
func TestWaitLogTail(t *testing.T) {
	ctx := testCtx(t)
	var long strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&long, "epoch %d loss %0.4f\n", i, 1/float64(i+1))
	}
	for _, tc := range []struct {
		name   string
		logs   runtime.Object
		logErr error
		want   func(string) bool
	}{
		{"long", &runtime.Unknown{Raw: []byte(long.String())}, nil, func(s string) bool {
			return len(s) <= jobs.LogTailBytes && len(s) > jobs.LogTailBytes-256 && strings.HasPrefix(s, "epoch ") && strings.HasSuffix(s, "epoch 4999 loss 0.0002\n")
		}},
		{"forbidden", nil, apierrors.NewForbidden(corev1.Resource("pods/log"), "p", errors.New("no")), func(s string) bool {
			return s == "termination message of edgeloop-train-logs-p"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			client.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() != "log" {
					return false, nil, nil
				}
				return true, tc.logs, tc.logErr
			})
			k := testBackend(t, testConfig(), client)
			ref, err := k.Start(ctx, testSpec("logs"))
			if err != nil {
				t.Fatal(err)
			}
			ns, name := splitRef(t, ref)
			addPod(t, ctx, client, ns, name, name+"-p", time.Now(), 2, "Error")
			finish(t, ctx, client, ns, name, batchv1.JobCondition{Type: batchv1.JobFailed, Reason: "BackoffLimitExceeded"})
			st, err := k.Wait(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(st.LogTail) {
				t.Fatalf("log tail (%d bytes) = %q", len(st.LogTail), st.LogTail)
			}
		})
	}
}

func TestJobName(t *testing.T) {
	long := "j" + strings.Repeat("x", 62)
	long2 := "j" + strings.Repeat("x", 61) + "y"
	for _, tc := range []struct{ id, want string }{
		{"job-1", "edgeloop-train-job-1"},
		{strings.Repeat("a", 48), "edgeloop-train-" + strings.Repeat("a", 48)},
	} {
		if got := jobName(tc.id); got != tc.want {
			t.Errorf("jobName(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
	seen := map[string]string{}
	for _, id := range []string{long, long2, "a-", "a", strings.Repeat("b", 49), "x" + strings.Repeat("-", 62)} {
		name := jobName(id)
		if len(name) > 63 || strings.HasSuffix(name, "-") || len(content.IsDNS1123Label(name)) > 0 {
			t.Errorf("jobName(%q) = %q, not a valid Job name", id, name)
		}
		if name != jobName(id) {
			t.Errorf("jobName(%q) is not deterministic", id)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("IDs %q and %q both map to %q", id, other, name)
		}
		seen[name] = id
	}
}

func TestLabelValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"fashion-mnist", "fashion-mnist"},
		{"fashion/mnist v2", "fashion-mnist-v2"},
		{"_x_", "x"},
		{"-a-", "a"},
		{strings.Repeat("m", 70), strings.Repeat("m", 63)},
		{strings.Repeat("m", 62) + "/z", strings.Repeat("m", 62)},
		{"ünïcode", "n-code"},
		{"", ""},
	} {
		if got := labelValue(tc.in); got != tc.want {
			t.Errorf("labelValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTailWriter(t *testing.T) {
	var w tailWriter
	for i := range 10000 {
		fmt.Fprintf(&w, "%05d\n", i)
	}
	if len(w.buf) != 2*jobs.LogTailBytes || !strings.HasSuffix(string(w.buf), "09999\n") {
		t.Fatalf("kept %d bytes ending %q", len(w.buf), w.buf[len(w.buf)-12:])
	}
	big := strings.Repeat("z", 5*jobs.LogTailBytes) + "end"
	if n, _ := w.Write([]byte(big)); n != len(big) || string(w.buf) != big[len(big)-2*jobs.LogTailBytes:] {
		t.Fatalf("one large write: n = %d, kept %d bytes", n, len(w.buf))
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{}, fake.NewClientset(), nil); err == nil || !strings.HasPrefix(err.Error(), "kubernetes: config: namespace: must not be empty") {
		t.Errorf("invalid config: err = %v", err)
	}
	if _, err := New(testConfig(), nil, nil); err == nil || err.Error() != "kubernetes: no client" {
		t.Errorf("nil client: err = %v", err)
	}
	k := testBackend(t, testConfig(), fake.NewClientset())
	if k.Name() != "kubernetes" {
		t.Errorf("Name() = %q", k.Name())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"defaults need an image", func(c *Config) { *c = DefaultConfig() }, "image: must name the training image"},
		{"entrypoint", func(c *Config) { c.Command = nil }, ""},
		{"no ttl", func(c *Config) { c.TTLAfterFinished = 0 }, ""},
		{"empty namespace", func(c *Config) { c.Namespace = "" }, "namespace: must not be empty"},
		{"bad namespace", func(c *Config) { c.Namespace = "Training" },
			`namespace: must be a DNS label (at most 63 of a-z, 0-9, '-', starting and ending with a letter or digit), got "Training"`},
		{"empty command word", func(c *Config) { c.Command = []string{"edgeloop", ""} }, "command[1]: must not be empty"},
		{"contract env", func(c *Config) { c.Env = map[string]string{"EDGELOOP_OUTPUT": "/tmp"} },
			`env: "EDGELOOP_OUTPUT": EDGELOOP_ variables are the job contract's and set by the backend`},
		{"bad env name", func(c *Config) { c.Env = map[string]string{"A=B": "1"} }, `env: "A=B" is not a valid environment variable name`},
		{"negative gpus", func(c *Config) { c.Resources.GPUs = -1 }, "resources.gpus: must not be negative, got -1"},
		{"bad cpu", func(c *Config) { c.Resources.CPU = "lots" }, `resources.cpu: "lots" is not a Kubernetes quantity (like 4, 500m, 16Gi)`},
		{"zero memory", func(c *Config) { c.Resources.Memory = "0" }, `resources.memory: must be positive, got "0"`},
		{"negative memory", func(c *Config) { c.Resources.Memory = "-1Gi" }, `resources.memory: must be positive, got "-1Gi"`},
		{"bad node selector key", func(c *Config) { c.NodeSelector = map[string]string{"a b": "x"} }, `node_selector: "a b" is not a valid label key`},
		{"bad node selector value", func(c *Config) { c.NodeSelector = map[string]string{"gpu": "a/b"} },
			`node_selector: "gpu": "a/b" is not a valid label value (at most 63 of A-Z, a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)`},
		{"toleration operator", func(c *Config) { c.Tolerations[0].Operator = "In" }, `tolerations[0].operator: must be Equal or Exists, got "In"`},
		{"toleration exists with value", func(c *Config) { c.Tolerations[0].Value = "true" }, `tolerations[0].value: must be empty with operator Exists, got "true"`},
		{"toleration equal without key", func(c *Config) {
			c.Tolerations = append(c.Tolerations, Toleration{Value: "x"})
		}, "tolerations[1].key: must not be empty with operator Equal (use Exists to tolerate every taint)"},
		{"toleration effect", func(c *Config) { c.Tolerations[0].Effect = "NoWay" },
			`tolerations[0].effect: must be NoSchedule, PreferNoSchedule, NoExecute or empty, got "NoWay"`},
		{"toleration key", func(c *Config) { c.Tolerations[0].Key = "-bad-" }, `tolerations[0].key: "-bad-" is not a valid taint key`},
		{"service account", func(c *Config) { c.ServiceAccount = "Train_SA" }, `service_account: "Train_SA" is not a valid service account name`},
		{"pull secret", func(c *Config) { c.ImagePullSecrets = []string{"ok", ""} }, `image_pull_secrets[1]: "" is not a valid secret name`},
		{"backoff limit", func(c *Config) { c.BackoffLimit = -1 }, "backoff_limit: must not be negative, got -1"},
		{"negative ttl", func(c *Config) { c.TTLAfterFinished = -time.Second }, "ttl_after_finished: must not be negative, got -1s"},
		{"short ttl", func(c *Config) { c.TTLAfterFinished = 30 * time.Second },
			"ttl_after_finished: must be 0 (keep finished Jobs) or at least 1m0s, so the Job outlives the poll that sees it finish; got 30s"},
		{"huge ttl", func(c *Config) { c.TTLAfterFinished = 1 << 62 },
			"ttl_after_finished: must be at most 596523h14m7s, got 1281023h53m38.427387904s"},
		{"poll interval", func(c *Config) { c.PollInterval = 0 }, "poll_interval: must be positive, got 0s"},
		{"reserved label", func(c *Config) { c.Labels = map[string]string{"edgeloop.io/job-id": "x"} }, `labels: "edgeloop.io/job-id" is set by the backend`},
		{"bad label", func(c *Config) { c.Labels = map[string]string{"team": "vision!"} },
			`labels: "team": "vision!" is not a valid label value (at most 63 of A-Z, a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)`},
		{"several", func(c *Config) { c.Image = ""; c.PollInterval = -time.Second },
			"image: must name the training image\npoll_interval: must be positive, got -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.modify(&c)
			err := c.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("Validate() = %q\nwant         %q", got, tc.want)
			}
			var fe *config.FieldError
			if err != nil && !errors.As(err, &fe) {
				t.Fatalf("%T is not a *config.FieldError", err)
			}
		})
	}
}

// docExample is the example in docs/job-backend-kubernetes.md; it must stay valid.
const docExample = `
kubeconfig: ""
namespace: ml-training
image: registry.example.com/edgeloop-train-pytorch:1.4.0
command: []                    # the image's entrypoint: python train.py
args: [--arch, cnn, --device, auto, --threads, "8", --epochs, "3", --lr, "0.0003"]
env:
  AWS_REGION: eu-west-1
resources:
  gpus: 1
  cpu: "8"
  memory: 32Gi
node_selector:
  nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
tolerations:
  - key: nvidia.com/gpu
    operator: Exists
    effect: NoSchedule
service_account: edgeloop-train
image_pull_secrets: [registry-creds]
backoff_limit: 0
ttl_after_finished: 1h
poll_interval: 5s
labels:
  team: vision
`

func TestConfigYAML(t *testing.T) {
	c := DefaultConfig()
	if err := config.Parse([]byte(docExample), &c); err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "ml-training" || c.Resources.GPUs != 1 || c.Resources.Memory != "32Gi" || c.TTLAfterFinished != time.Hour ||
		len(c.Tolerations) != 1 || c.Tolerations[0].Operator != "Exists" || c.Labels["team"] != "vision" ||
		len(c.Command) != 0 || len(c.Args) != 10 {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("the documented example: %v", err)
	}

	c = DefaultConfig()
	err := config.Parse([]byte("image: x\nresources:\n  gpu: 1\n"), &c)
	if err == nil || err.Error() != "resources.gpu: unknown field (line 3)" {
		t.Fatalf("unknown key: err = %v", err)
	}
}

func TestClient(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	const doc = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`
	if err := os.WriteFile(kubeconfig, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Kubeconfig = kubeconfig
	if _, err := Client(cfg); err != nil {
		t.Fatalf("from kubeconfig: %v", err)
	}

	// Outside a cluster, an empty kubeconfig falls back to $KUBECONFIG.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", kubeconfig)
	cfg.Kubeconfig = ""
	if _, err := Client(cfg); err != nil {
		t.Fatalf("from $KUBECONFIG: %v", err)
	}

	cfg.Kubeconfig = filepath.Join(dir, "missing")
	if _, err := Client(cfg); err == nil || !strings.HasPrefix(err.Error(), "kubernetes: client config: ") {
		t.Fatalf("missing kubeconfig: err = %v", err)
	}
}

// TestConfiguredEnvCannotSetContract checks that env may set no contract variable, the
// optional EDGELOOP_BASE_MODEL included: a spec without a base model would otherwise hand the
// job the configured value.
func TestConfiguredEnvCannotSetContract(t *testing.T) {
	names := slices.Sorted(maps.Keys(jobs.ContractEnv()))
	if len(names) != 6 {
		t.Fatalf("contract variables %v, want 6", names)
	}
	for _, name := range names {
		c := testConfig()
		c.Env = map[string]string{name: "x"}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "EDGELOOP_ variables are the job contract's") {
			t.Errorf("%s: Validate() = %v, want it refused", name, err)
		}
	}
}
