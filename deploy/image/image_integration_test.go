//go:build integration

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// need skips the test with why, or fails it under CI=true, where everything must be there.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// TestImageRuns builds the amd64 edge image as `make images` does (the exporter built like `make
// exporter`, stage.sh, then this program), reads it back from its OCI layout, unpacks its layers
// into a directory and runs, chrooted there as the image's user, `version` and the exporter,
// reading /metrics. The user can write nowhere in the unpacked root but the state directory, as
// under a read-only root file system.
func TestImageRuns(t *testing.T) {
	root, img := imageFromSource(t, "edgeloop-exporter", "github.com/edgeloop/edgeloop/cmd/edgeloop-exporter")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cf.Config.Volumes["/var/lib/edgeloop"]; !ok {
		t.Errorf("config declares no /var/lib/edgeloop volume: %v", cf.Config.Volumes)
	}
	for _, f := range []string{"usr/bin/edgeloop-exporter", "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libdl.so.2", "etc/ssl/certs/ca-certificates.crt", "usr/share/zoneinfo/Europe/Berlin", "etc/passwd"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the image lacks /%s: %v", f, err)
		}
	}

	// version, chrooted, as the image's user.
	var out bytes.Buffer
	cmd := chrooted(root, &out, "/usr/bin/edgeloop-exporter", "version")
	if err := cmd.Run(); err != nil {
		t.Fatalf("version in the image: %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "edgeloop ") {
		t.Errorf("version printed %q", out.String())
	}

	// The exporter, chrooted, as the image's user, with its state where the volume would be.
	metrics, front := freePort(t), freePort(t)
	if err := os.MkdirAll(filepath.Join(root, "etc/edgeloop"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("metrics:\n  listen: %s\ninference:\n  listen: %s\nlog:\n  format: json\n", metrics, front)
	if err := os.WriteFile(filepath.Join(root, "etc/edgeloop/exporter.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	exp := chrooted(root, &log, "/usr/bin/edgeloop-exporter", "exporter", "--config", "/etc/edgeloop/exporter.yaml")
	if err := exp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exp.Process.Kill()
		_ = exp.Wait()
		if t.Failed() {
			t.Logf("exporter log:\n%s", log.String())
		}
	})
	body := waitMetrics(t, "http://"+metrics+"/metrics", 20*time.Second)
	for _, want := range []string{"edgeloop_build_info", "edgeloop_gpu_expected{", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics from the image lacks %q", want)
		}
	}
	// It ran as the image's user, who owns nothing in the root but the state directory, so
	// that the root file system can be mounted read-only.
	if err := exec.Command("sh", "-c", fmt.Sprintf("grep -q '^Uid:.*%d' /proc/%d/status", uid, exp.Process.Pid)).Run(); err != nil {
		t.Errorf("the exporter does not run as uid %d", uid)
	}
	err = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := info.Sys().(*syscall.Stat_t)
		writable := st.Uid == uid && info.Mode().Perm()&0o200 != 0 || info.Mode().Perm()&0o002 != 0
		if writable && info.Mode()&os.ModeSymlink == 0 && rel != "var/lib/edgeloop" && rel != "tmp" && !strings.HasPrefix(rel, "var/lib/edgeloop/") {
			t.Errorf("/%s is writable by the image's user", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := exp.Wait(); err != nil {
		t.Errorf("the exporter in the image exited on SIGTERM with %v", err)
	}
}

// TestFullImageRuns builds the amd64 data-center image (the full edgeloop binary) as `make
// images` does and runs from it, chrooted as the image's user, `version` and a collector on a
// real MinIO, which must take one batch: the WAL in the state directory, the bucket over S3.
func TestFullImageRuns(t *testing.T) {
	root, _ := imageFromSource(t, "edgeloop", "github.com/edgeloop/edgeloop/cmd/edgeloop")
	var out bytes.Buffer
	if err := chrooted(root, &out, "/usr/bin/edgeloop", "version").Run(); err != nil {
		t.Fatalf("version in the image: %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "edgeloop ") {
		t.Errorf("version printed %q", out.String())
	}

	m := testenv.StartMinIO(t)
	s3 := objstore.DefaultS3Config()
	s3.Endpoint, s3.AccessKey, s3.SecretKey, s3.Insecure, s3.Bucket = m.Endpoint, m.AccessKey, m.SecretKey, true, "edgeloop"
	if err := objstore.CreateS3Bucket(context.Background(), s3); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(root, "etc/edgeloop")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	collectortest.TokensFile(t, etc, "node-1")
	if err := os.Chmod(filepath.Join(etc, "tokens"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	cfg := fmt.Sprintf("instance: image\nlisten: %s\nlog:\n  format: json\nauth:\n  tokens_file: /etc/edgeloop/tokens\nbucket: s3://edgeloop?endpoint=%s&insecure=true\n", listen, m.Endpoint)
	if err := os.WriteFile(filepath.Join(etc, "collector.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	col := chrooted(root, &log, "/usr/bin/edgeloop", "collector", "--config", "/etc/edgeloop/collector.yaml")
	col.Env = append(col.Env, "AWS_ACCESS_KEY_ID="+m.AccessKey, "AWS_SECRET_ACCESS_KEY="+m.SecretKey)
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = col.Process.Kill()
		_ = col.Wait()
		if t.Failed() {
			t.Logf("collector log:\n%s", log.String())
		}
	})
	if body := waitMetrics(t, "http://"+listen+"/metrics", 30*time.Second); !strings.Contains(body, "edgeloop_build_info") {
		t.Errorf("/metrics from the image lacks edgeloop_build_info")
	}

	// One batch, posted until the catalog has read the bucket (503 until then).
	batch := collectortest.Zstd(t, collectortest.Tar(t, collectortest.Sample(t, "node-1", 1, 4096), collectortest.Sample(t, "node-1", 2, 4096)))
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/v1/samples", bytes.NewReader(batch))
		req.Header.Set("Content-Type", "application/x-tar")
		req.Header.Set("Content-Encoding", "zstd")
		req.Header.Set("Authorization", "Bearer "+collectortest.Token("node-1"))
		req.Header.Set("X-Edgeloop-Node", "node-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if !strings.Contains(string(body), `"accepted":2`) {
				t.Errorf("the collector in the image answered %s", body)
			}
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("the collector in the image answered %d: %s", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	entries, err := os.ReadDir(filepath.Join(root, "var/lib/edgeloop/collector/wal"))
	if err != nil || len(entries) == 0 {
		t.Errorf("no write-ahead log in the image's state directory: %v, %d entries", err, len(entries))
	}
	if err := col.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := col.Wait(); err != nil {
		t.Errorf("the collector in the image exited on SIGTERM with %v", err)
	}
}

// imageFromSource builds the amd64 image of the binary name from the Go package pkg as `make
// images` does (the binary stripped, stage.sh, then this program, twice to show the build is
// reproducible), checks the image's configuration and annotations, and unpacks it into a
// directory it returns with the image.
func imageFromSource(t *testing.T, name, pkg string) (root string, img v1.Image) {
	t.Helper()
	need(t, runtime.GOARCH == "amd64", "the image test runs the amd64 image natively")
	need(t, os.Geteuid() == 0, "chroot needs root")
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" not found: stage.sh takes glibc, tzdata and CA certificates from Debian's packages")
	}
	b, ok := binaryNamed(name)
	if !ok {
		t.Fatalf("no image is named %q", name)
	}
	work := t.TempDir()
	bin := filepath.Join(work, name)
	runCmd(t, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	stage := filepath.Join(work, "stage")
	runCmd(t, "./stage.sh", "amd64", bin, stage, name)

	o := options{out: filepath.Join(work, "oci"), binary: b, version: "test", revision: "0123abc", source: "https://github.com/edgeloop/edgeloop", created: time.Unix(1700000000, 0).UTC()}
	if err := o.platforms.Set("linux/amd64=" + stage); err != nil {
		t.Fatal(err)
	}
	idx, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeLayout(o.out, idx, o.version); err != nil {
		t.Fatal(err)
	}
	// The same input makes the same image: the layers carry no build time or build user.
	again, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of one input differ: %s and %s", d1, d2)
	}

	img = readBack(t, o.out, "test", v1.Platform{OS: "linux", Architecture: "amd64"})
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != user || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config: user %q, platform %s/%s; want %s, linux/amd64", cf.Config.User, cf.OS, cf.Architecture, user)
	}
	if got, want := strings.Join(cf.Config.Entrypoint, " "), "/usr/bin/"+name; got != want {
		t.Errorf("entrypoint %q, want %q", got, want)
	}
	for _, p := range b.ports {
		if _, ok := cf.Config.ExposedPorts[p]; !ok {
			t.Errorf("config exposes %v, not %s", cf.Config.ExposedPorts, p)
		}
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "test",
		"org.opencontainers.image.revision": "0123abc",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
		"org.opencontainers.image.title":    name,
	} {
		if got := m.Annotations[k]; got != want {
			t.Errorf("manifest annotation %s = %q, want %q", k, got, want)
		}
	}

	root = filepath.Join(work, "root")
	files := unpack(t, img, root)
	t.Logf("image %s: %d layers, %d entries unpacked", d1, len(m.Layers), files)
	return root, img
}

// runCmd runs name args..., failing the test on error.
func runCmd(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// readBack opens the layout at dir, finds the index named ref and in it the image for p.
func readBack(t *testing.T, dir, ref string, p v1.Platform) v1.Image {
	t.Helper()
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] != ref {
			continue
		}
		idx, err := top.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range m.Manifests {
			if c.Platform != nil && c.Platform.Satisfies(p) {
				img, err := idx.Image(c.Digest)
				if err != nil {
					t.Fatal(err)
				}
				return img
			}
		}
	}
	t.Fatalf("no %s image named %q in %s", p.String(), ref, dir)
	return nil
}

// unpack extracts img's layers in order into root, keeping modes and owners, as a container
// runtime would; it returns how many entries it wrote.
func unpack(t *testing.T, img v1.Image, root string) int {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, filepath.Clean("/"+h.Name))
			switch h.Typeflag {
			case tar.TypeDir:
				err = os.MkdirAll(p, 0o755)
			case tar.TypeSymlink:
				err = os.Symlink(h.Linkname, p)
			case tar.TypeReg:
				var f *os.File
				if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
					_, err = io.Copy(f, tr)
					err = errors.Join(err, f.Close())
				}
			default:
				t.Fatalf("layer entry %s of type %c", h.Name, h.Typeflag)
			}
			if err == nil {
				err = os.Lchown(p, h.Uid, h.Gid)
			}
			if err == nil && h.Typeflag != tar.TypeSymlink {
				err = os.Chmod(p, os.FileMode(h.Mode).Perm()|modeBits(h.Mode))
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		_ = rc.Close()
	}
	return n
}

// modeBits maps tar's setuid, setgid and sticky bits onto os.FileMode's.
func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// chrooted is name args... run in root as the image's user, output to w.
func chrooted(root string, w io.Writer, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	return cmd
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitMetrics polls url until it answers 200 and returns the body.
func waitMetrics(t *testing.T, url string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
