// Command image builds edgeloop's OCI images without Docker (docs/deploy.md, "OCI images"):
// the lean edge image (edgeloop-exporter) and the full one (edgeloop: collector, retrain,
// train). From one staged directory per platform (stage.sh: a base layer of glibc, CA
// certificates, tzdata and the non-root user; an app layer holding the binary) it writes an
// OCI image layout holding one multi-platform index, with reproducible layers and OCI
// annotations.
//
//	go run ./deploy/image --binary edgeloop-exporter --out dist/images/edgeloop-exporter --version v1.2.3 \
//	    --platform linux/amd64=dist/stage/amd64 --platform linux/arm64=dist/stage/arm64
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: uid and gid 65532, "nonroot" in stage.sh's passwd, as distroless names it.
const (
	uid  = 65532
	user = "65532:65532"
)

// stateDir is the exporter's default state (model cache, spool): the one directory the user
// owns, declared a volume so that the root file system can stay read-only.
const stateDir = "var/lib/edgeloop"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// binary is what differs between the two images: the program, what it is, how it starts by
// default and the ports it listens on.
type binary struct {
	name        string
	description string
	cmd         []string
	ports       []string
}

// binaryNamed gives the image --binary names, or false for a name it does not know.
func binaryNamed(name string) (binary, bool) {
	switch name {
	case "edgeloop-exporter":
		return binary{
			name:        name,
			description: "edgeloop's edge agent: GPU and inference telemetry, the Open Inference Protocol front, sample capture and model sync",
			cmd:         []string{"exporter"},
			// The inference front (the Open Inference Protocol port) and /metrics.
			ports: []string{"8000/tcp", "9750/tcp"},
		}, true
	case "edgeloop":
		return binary{
			name:        name,
			description: "edgeloop's data-center binary: the collector, the retrain controller and the reference trainer",
			// No server is the obvious default: the chart and operators name one (collector or retrain).
			cmd: []string{"--help"},
			// The collector's and the retrain controller's default listeners.
			ports: []string{"9751/tcp", "9752/tcp"},
		}, true
	}
	return binary{}, false
}

// platformFlag is one --platform os/arch=DIR.
type platformFlag struct {
	platform v1.Platform
	dir      string
}

// platforms is the repeatable --platform flag.
type platforms []platformFlag

// String lists the platforms, as flag.Value asks.
func (p *platforms) String() string {
	var s []string
	for _, f := range *p {
		s = append(s, f.platform.String()+"="+f.dir)
	}
	return strings.Join(s, ",")
}

// Set reads os/arch=DIR; arm64 gets the v8 variant registries expect.
func (p *platforms) Set(v string) error {
	spec, dir, ok := strings.Cut(v, "=")
	osName, arch, ok2 := strings.Cut(spec, "/")
	if !ok || !ok2 || dir == "" || osName != "linux" || (arch != "amd64" && arch != "arm64") {
		return fmt.Errorf("want linux/amd64=DIR or linux/arm64=DIR, got %q", v)
	}
	pl := v1.Platform{OS: osName, Architecture: arch}
	if arch == "arm64" {
		pl.Variant = "v8"
	}
	*p = append(*p, platformFlag{platform: pl, dir: dir})
	return nil
}

// options are what one build is told.
type options struct {
	out       string
	binary    binary
	platforms platforms
	version   string
	revision  string
	source    string
	created   time.Time
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	name := fs.String("binary", "edgeloop-exporter", "the image to build: edgeloop-exporter (the edge agent) or edgeloop (collector, retrain, train)")
	fs.StringVar(&o.out, "out", "dist/images/edgeloop-exporter", "OCI image layout directory to write (replaced)")
	fs.Var(&o.platforms, "platform", "linux/amd64=DIR or linux/arm64=DIR: a directory stage.sh laid out (repeatable)")
	fs.StringVar(&o.version, "version", "dev", "the version: org.opencontainers.image.version and the layout's ref name")
	fs.StringVar(&o.revision, "revision", "", "the source revision (git commit): org.opencontainers.image.revision")
	fs.StringVar(&o.source, "source", "https://github.com/edgeloop/edgeloop", "org.opencontainers.image.source")
	created := fs.String("created", "", "creation time, RFC 3339 (default: SOURCE_DATE_EPOCH, else the Unix epoch, so that builds are reproducible)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(o.platforms) == 0 || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "image: at least one --platform and no arguments")
		return 2
	}
	var ok bool
	if o.binary, ok = binaryNamed(*name); !ok {
		fmt.Fprintf(stderr, "image: --binary must be edgeloop-exporter or edgeloop, got %q\n", *name)
		return 2
	}
	var err error
	if o.created, err = createdTime(*created, os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 2
	}
	idx, err := build(o)
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	if err := writeLayout(o.out, idx, o.version); err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	d, err := idx.Digest()
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: index %s, %s\n", o.out, d, o.platforms.String())
	return 0
}

// createdTime reads --created, or else SOURCE_DATE_EPOCH, or else gives the Unix epoch.
func createdTime(flagValue, epoch string) (time.Time, error) {
	switch {
	case flagValue != "":
		t, err := time.Parse(time.RFC3339, flagValue)
		if err != nil {
			return time.Time{}, fmt.Errorf("--created: %w", err)
		}
		return t.UTC(), nil
	case epoch != "":
		s, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(s, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}

// annotations are the OCI annotations of the index and of each image, also the images' labels.
func (o options) annotations() map[string]string {
	a := map[string]string{
		"org.opencontainers.image.title":         o.binary.name,
		"org.opencontainers.image.description":   o.binary.description,
		"org.opencontainers.image.version":       o.version,
		"org.opencontainers.image.source":        o.source,
		"org.opencontainers.image.url":           o.source,
		"org.opencontainers.image.documentation": o.source + "/blob/main/docs/deploy.md",
		"org.opencontainers.image.created":       o.created.Format(time.RFC3339),
		"org.opencontainers.image.vendor":        "edgeloop",
	}
	if o.revision != "" {
		a["org.opencontainers.image.revision"] = o.revision
	}
	return a
}

// build makes one image per platform and the index listing them.
func build(o options) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, p := range o.platforms {
		img, err := buildImage(o, p)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", p.platform.String(), err)
		}
		pl := p.platform
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pl}})
	}
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, o.annotations()).(v1.ImageIndex), nil
}

// buildImage makes one platform's image from its staged base/ and app/ directories.
func buildImage(o options, p platformFlag) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for _, l := range []struct{ dir, what string }{
		{"base", "glibc, CA certificates, tzdata, the non-root user (stage.sh)"},
		{"app", "the " + o.binary.name + " binary"},
	} {
		data, err := tarDir(filepath.Join(p.dir, l.dir), o.created)
		if err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.dir, err)
		}
		adds = append(adds, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: o.created}, CreatedBy: "deploy/image: " + l.what,
		}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.platform.OS, p.platform.Architecture, p.platform.Variant
	cf.Created = v1.Time{Time: o.created}
	ports := map[string]struct{}{}
	for _, p := range o.binary.ports {
		ports[p] = struct{}{}
	}
	cf.Config = v1.Config{
		User:       user,
		Entrypoint: []string{"/usr/bin/" + o.binary.name},
		Cmd:        o.binary.cmd,
		WorkingDir: "/" + stateDir,
		Env: []string{
			"PATH=/usr/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		},
		ExposedPorts: ports,
		Volumes:      map[string]struct{}{"/" + stateDir: {}},
		Labels:       o.annotations(),
		StopSignal:   "SIGTERM",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, o.annotations()).(v1.Image), nil
}

// tarDir writes dir's tree as a layer: entries in lexical order, every time set to created,
// owned by root except the state directory (the user's), so the same input gives the same bytes.
func tarDir(dir string, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = created, time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
		switch {
		case h.Name == stateDir+"/":
			h.Uid, h.Gid, h.Mode = uid, uid, 0o750
		case h.Name == "tmp/":
			h.Mode = 0o1777
		case d.IsDir():
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// writeLayout replaces dir with an OCI image layout whose index.json names idx by version.
func writeLayout(dir string, idx v1.ImageIndex, version string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
	})); err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	return nil
}
