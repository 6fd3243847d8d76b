//go:build integration

package gate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgeloop/edgeloop/internal/jobenv"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/httpjob"
	"github.com/edgeloop/edgeloop/retrain/jobs/kubejob"
)

// stageBucket starts a real MinIO, creates a bucket in it and returns it open with its URL.
// The evaluation job (gate.RunEvalJob, what `edgeloop evaluate` runs) opens the same URL with
// the credentials from the environment, as a job's container would.
func stageBucket(t *testing.T) (objstore.Bucket, string) {
	t.Helper()
	endpoint, access, secret := testenv.MinIO(t)
	t.Setenv(objstore.EnvAccessKey, access)
	t.Setenv(objstore.EnvSecretKey, secret)
	url := "s3://stage?endpoint=" + endpoint + "&insecure=true"
	ctx := context.Background()
	cfg := objstore.DefaultS3Config()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Insecure, cfg.Bucket = endpoint, access, secret, true, "stage"
	if err := objstore.CreateS3Bucket(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, url
}

// kubelet plays the part of Kubernetes' controllers for the fake clientset, which runs no
// pods: each new Job in ns is run as its container would run it (`edgeloop evaluate` reading
// the contract's variables: here gate.RunEvalJob with the container's environment) and marked
// Complete or Failed. It returns the number of Jobs it ran.
func kubelet(t *testing.T, ctx context.Context, client *fake.Clientset, ns string) *atomic.Int64 {
	var ran atomic.Int64
	done := map[string]bool{}
	go func() {
		for ctx.Err() == nil {
			list, err := client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return
			}
			for i := range list.Items {
				job := &list.Items[i]
				if done[job.Name] {
					continue
				}
				done[job.Name] = true
				env := map[string]string{}
				c := job.Spec.Template.Spec.Containers[0]
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
				cond := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}
				if strings.Join(c.Command, " ") != "edgeloop evaluate" {
					cond.Type, cond.Message = batchv1.JobFailed, fmt.Sprintf("command %q is not the evaluation job's", c.Command)
				} else if err := gate.RunEvalJob(ctx, env[jobenv.DatasetManifest], env[jobenv.Output], discard()); err != nil {
					cond.Type, cond.Message = batchv1.JobFailed, err.Error()
				}
				ran.Add(1)
				job.Status.Conditions = append(job.Status.Conditions, cond)
				if cond.Type == batchv1.JobComplete {
					job.Status.CompletionTime = &cond.LastTransitionTime
				}
				if _, err := client.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
					t.Errorf("kubelet: %v", err)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return &ran
}

// TestJobRemoteKubernetesConformance runs the conformance suite against the job evaluator on
// the kubernetes backend: the request, the set's inputs and both models are staged in a real
// MinIO, the Job the backend creates is run from its container's environment (the fake
// clientset runs no pods), and the report is read back from the bucket.
func TestJobRemoteKubernetesConformance(t *testing.T) {
	b, url := stageBucket(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	ran := kubelet(t, ctx, client, "evals")
	var evals int
	gatetest.Run(t, func(t *testing.T) gate.Evaluator {
		cfg := gate.DefaultJobConfig()
		cfg.Backend = gate.JobBackendKubernetes
		cfg.Kubernetes.Namespace, cfg.Kubernetes.Image, cfg.Kubernetes.PollInterval = "evals", "edgeloop:test", 20*time.Millisecond
		cfg.Timeout = time.Minute
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		k, err := kubejob.New(cfg.Kubernetes, client, discard())
		if err != nil {
			t.Fatal(err)
		}
		evals++
		stage := &gate.Stage{Bucket: b, URL: url, Prefix: fmt.Sprintf("jobs/shapes/job-shapes-%d/eval/", evals)}
		ev, err := gate.NewJobEvaluator(cfg, k, stage, fmt.Sprintf("job-shapes-%d", evals), "shapes", t.TempDir(), discard())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	})
	// Every conformance case that scores ran at least one Job; count them so a suite that
	// scored nothing remotely fails.
	if ran.Load() < 2 {
		t.Fatalf("the kubelet ran %d evaluation Jobs, want at least 2", ran.Load())
	}
	keys, err := objstore.List(ctx, b, "jobs/shapes/", true)
	if err != nil {
		t.Fatal(err)
	}
	var reports, models int
	for _, k := range keys {
		switch {
		case strings.HasSuffix(k, "/output/"+gate.EvalReportFile):
			reports++
		case strings.HasSuffix(k, "/model.onnx"):
			models++
		}
	}
	t.Logf("%d Jobs ran; the stage holds %d reports and %d staged models", ran.Load(), reports, models)
	if reports == 0 || models == 0 {
		t.Fatalf("the stage holds %d reports and %d models; want both", reports, models)
	}
}

// evalPlatform is an HTTP job platform for the http backend in poll mode: POST /runs starts
// the evaluation job the body describes (the default body: the contract's fields) in the
// background; GET /runs/{id} answers its state.
type evalPlatform struct {
	mu    sync.Mutex
	runs  map[string]string // run ID → RUNNING, SUCCEEDED, FAILED
	msgs  map[string]string
	count int
}

func (p *evalPlatform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/runs":
		var body struct {
			ID              string `json:"id"`
			DatasetManifest string `json:"dataset_manifest"`
			Output          string `json:"output"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.count++
		id := fmt.Sprintf("run-%d", p.count)
		p.runs[id] = "RUNNING"
		p.mu.Unlock()
		go func() {
			state, msg := "SUCCEEDED", ""
			if err := gate.RunEvalJob(context.Background(), body.DatasetManifest, body.Output, discard()); err != nil {
				state, msg = "FAILED", err.Error()
			}
			p.mu.Lock()
			p.runs[id], p.msgs[id] = state, msg
			p.mu.Unlock()
		}()
		json.NewEncoder(w).Encode(map[string]string{"run_id": id})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/runs/"):
		id := strings.TrimPrefix(r.URL.Path, "/runs/")
		p.mu.Lock()
		state, ok := p.runs[id]
		msg := p.msgs[id]
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"state": state, "message": msg})
	default:
		http.NotFound(w, r)
	}
}

// TestJobRemoteHTTPConformance runs the conformance suite against the job evaluator on the
// http backend (poll mode), the platform running each evaluation on the staged URLs.
func TestJobRemoteHTTPConformance(t *testing.T) {
	b, url := stageBucket(t)
	p := &evalPlatform{runs: map[string]string{}, msgs: map[string]string{}}
	srv := httptest.NewServer(p)
	defer srv.Close()
	var evals int
	gatetest.Run(t, func(t *testing.T) gate.Evaluator {
		cfg := gate.DefaultJobConfig()
		cfg.Backend = gate.JobBackendHTTP
		cfg.HTTP.URL, cfg.HTTP.RunID = srv.URL+"/runs", "run_id"
		cfg.HTTP.StatusURL, cfg.HTTP.StatusField, cfg.HTTP.MessageField = srv.URL+"/runs/{{.RunID}}", "state", "message"
		cfg.HTTP.PollInterval = 20 * time.Millisecond
		cfg.Timeout = time.Minute
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		h, err := httpjob.New(cfg.HTTP, "", discard())
		if err != nil {
			t.Fatal(err)
		}
		evals++
		stage := &gate.Stage{Bucket: b, URL: url, Prefix: fmt.Sprintf("jobs/shapes/job-shapes-%d/eval/", evals)}
		ev, err := gate.NewJobEvaluator(cfg, h, stage, fmt.Sprintf("job-shapes-%d", evals), "shapes", t.TempDir(), discard())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	var ok int
	for _, s := range p.runs {
		if s == "SUCCEEDED" {
			ok++
		}
	}
	t.Logf("the platform ran %d evaluation jobs, %d succeeded", p.count, ok)
	if ok < 2 {
		t.Fatalf("%d evaluation jobs succeeded on the platform, want at least 2", ok)
	}
}

// TestJobRemoteRefusesTamperedModel checks that the evaluation job scores only the bytes the
// request names: a staged model replaced after staging makes the job fail with the SHA-256
// mismatch, and the gate reports the job's failure.
func TestJobRemoteRefusesTamperedModel(t *testing.T) {
	b, url := stageBucket(t)
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	in, labels := gatetest.Samples(spec, protos, 12, 1, 1)
	set, err := gate.NewSet(spec, "t", in, labels)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gatetest.WriteModel(t, dir, spec, protos, gatetest.ModelOptions{})
	m, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A backend that, between staging and running, overwrites the staged model.
	tamper := &tamperBackend{bucket: b}
	cfg := gate.DefaultJobConfig()
	cfg.Timeout = time.Minute
	stage := &gate.Stage{Bucket: b, URL: url, Prefix: "jobs/shapes/job-shapes-1/eval/"}
	ev, err := gate.NewJobEvaluator(cfg, tamper, stage, "job-shapes-1", "shapes", t.TempDir(), discard())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ev.Score(context.Background(), set, []gate.Model{m})
	if err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("a tampered staged model: %v, want the job to fail on its SHA-256", err)
	}
	if tamper.replaced == 0 {
		t.Fatal("the backend replaced no staged model: the test exercised nothing")
	}
}

// tamperBackend runs the evaluation job in process after replacing every staged model.onnx
// with other bytes.
type tamperBackend struct {
	bucket   objstore.Bucket
	replaced int
	st       jobs.Status
}

func (b *tamperBackend) Name() string { return "tamper" }

func (b *tamperBackend) Start(ctx context.Context, spec jobs.Spec) (jobs.Ref, error) {
	_, key, err := objstore.SplitObjectURL(spec.DatasetManifest)
	if err != nil {
		return jobs.Ref{}, err
	}
	prefix := strings.TrimSuffix(key, "request/"+gate.EvalRequestFile)
	keys, err := objstore.List(ctx, b.bucket, prefix+"models/", true)
	if err != nil {
		return jobs.Ref{}, err
	}
	for _, k := range keys {
		junk := []byte("not the model the request names")
		if err := b.bucket.Put(ctx, k, strings.NewReader(string(junk)), int64(len(junk))); err != nil {
			return jobs.Ref{}, err
		}
		b.replaced++
	}
	b.st = jobs.Status{State: jobs.Succeeded}
	if err := gate.RunEvalJob(ctx, spec.DatasetManifest, spec.Output, discard()); err != nil {
		b.st = jobs.Status{State: jobs.Failed, Message: err.Error()}
	}
	return jobs.Ref{Backend: "tamper", ID: spec.ID}, nil
}

func (b *tamperBackend) Wait(context.Context, jobs.Ref) (jobs.Status, error) { return b.st, nil }

func (b *tamperBackend) Cancel(context.Context, jobs.Ref) error { return nil }
