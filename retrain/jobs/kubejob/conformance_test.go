package kubejob

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgeloop/edgeloop/internal/jobenv"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/jobstest"
)

// conformanceNamespace is where the conformance suite's Jobs run.
const conformanceNamespace = "conformance"

// kubelet plays the part of Kubernetes' job controller and kubelet for the fake clientset,
// which runs no pods: every Job in the namespace without a final condition is run as the
// outcome at the end of its container's EDGELOOP_MODEL says (a held Job once its job ID has
// been released), which means a pod whose container ended with the outcome's exit code and
// the Job's Complete or Failed condition.
type kubelet struct {
	t      *testing.T
	client *fake.Clientset

	mu       sync.Mutex
	released map[string]bool // job IDs
	ran      int             // Jobs brought to an end
}

func (k *kubelet) release(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.released[id] = true
}

// run moves Jobs along every few milliseconds until ctx ends.
func (k *kubelet) run(ctx context.Context) {
	for ctx.Err() == nil {
		list, err := k.client.BatchV1().Jobs(conformanceNamespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range list.Items {
				k.step(ctx, &list.Items[i])
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// step ends job if its outcome says it is time.
func (k *kubelet) step(ctx context.Context, job *batchv1.Job) {
	if len(job.Status.Conditions) > 0 {
		return
	}
	env := map[string]string{}
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	model := env[jobenv.Model]
	cond := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}
	code := int32(0)
	switch {
	case strings.HasSuffix(model, "-"+jobstest.Fail.String()):
		code = jobstest.FailExitCode
		cond.Type, cond.Reason, cond.Message = batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit"
	case strings.HasSuffix(model, "-"+jobstest.Hold.String()):
		k.mu.Lock()
		released := k.released[env[jobenv.JobID]]
		k.mu.Unlock()
		if !released {
			return
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: job.Name + "-pod", Namespace: job.Namespace,
			Labels:            map[string]string{batchv1.JobNameLabel: job.Name, "job-name": job.Name},
			CreationTimestamp: metav1.Now(),
		},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name:  ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}},
		}}},
	}
	if _, err := k.client.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) && ctx.Err() == nil {
		k.t.Errorf("kubelet: %v", err)
		return
	}
	job.Status.Conditions = append(job.Status.Conditions, cond)
	if cond.Type == batchv1.JobComplete {
		job.Status.CompletionTime = &cond.LastTransitionTime
	}
	// Counted before the update: a Wait may see the condition, and the test end, at once.
	k.mu.Lock()
	k.ran++
	k.mu.Unlock()
	// A Job cancelled (deleted) meanwhile is simply gone.
	if _, err := k.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		k.t.Errorf("kubelet: %v", err)
		return
	}
}

// TestConformance runs the conformance suite on client-go's fake clientset, with a kubelet
// goroutine that runs the Jobs. Every backend talks to the same fake cluster, as a restarted
// controller talks to the same cluster.
func TestConformance(t *testing.T) {
	client := fake.NewClientset()
	k := &kubelet{t: t, client: client, released: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		k.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	jobstest.Run(t, jobstest.Harness{
		New: func(t *testing.T) jobs.Backend {
			cfg := DefaultConfig()
			cfg.Namespace, cfg.Image, cfg.PollInterval = conformanceNamespace, "edgeloop:conformance", 10*time.Millisecond
			b, err := New(cfg, client, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Spec: func(t *testing.T, id string, o jobstest.Outcome) jobs.Spec {
			return jobs.Spec{
				ID:              id,
				Model:           "conformance-" + o.String(),
				BaseVersion:     1,
				DatasetManifest: "s3://edgeloop/jobs/conformance/" + id + "/dataset.json",
				Output:          "s3://edgeloop/jobs/conformance/" + id + "/output/",
				Timeout:         time.Hour,
			}
		},
		Release: func(t *testing.T, spec jobs.Spec) { k.release(spec.ID) },
		Starts: func(t *testing.T, spec jobs.Spec) int {
			list, err := client.BatchV1().Jobs(conformanceNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelJobID + "=" + labelValue(spec.ID)})
			if err != nil {
				t.Fatal(err)
			}
			return len(list.Items)
		},
		Unknown: func(t *testing.T) jobs.Ref {
			return jobs.Ref{Backend: backendName, ID: conformanceNamespace + "/" + jobName("conf-no-such-job")}
		},
		ExitCodes:       true,
		IdempotentStart: true,
	})
	k.mu.Lock()
	defer k.mu.Unlock()
	t.Logf("the kubelet ran %d Jobs", k.ran)
	if k.ran < 8 {
		t.Errorf("the kubelet ran %d Jobs; the suite should have had it run at least 8", k.ran)
	}
}
