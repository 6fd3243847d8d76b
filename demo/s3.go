package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/spf13/afero"
)

// s3Server is an S3-compatible server on loopback, in-process (gofakes3 on a directory), so
// the demo's collector, controller and exporters use their real S3 code (minio-go) without
// a MinIO to install.
type s3Server struct {
	addr string
	srv  *http.Server
}

// Credentials of the embedded server: gofakes3 accepts any, the clients need some.
const (
	s3AccessKey = "edgeloop-demo"
	s3SecretKey = "edgeloop-demo-secret"
)

// startS3 serves the buckets under dir, creating bucket.
func startS3(dir, bucket string, logger *slog.Logger) (*s3Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fs, err := s3afero.NewBasePathFs(afero.NewOsFs(), dir, 0)
	if err != nil {
		return nil, fmt.Errorf("embedded s3: %w", err)
	}
	backend, err := s3afero.MultiBucket(fs)
	if err != nil {
		return nil, fmt.Errorf("embedded s3: %w", err)
	}
	if err := backend.CreateBucket(bucket); err != nil && !gofakes3.HasErrorCode(err, gofakes3.ErrBucketAlreadyExists) {
		return nil, fmt.Errorf("embedded s3: create bucket: %w", err)
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()), gofakes3.WithTimeSkewLimit(0))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("embedded s3: %w", err)
	}
	s := &s3Server{addr: l.Addr().String(), srv: &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 10 * time.Second,
		// net/http's own complaints (gofakes3 writes a second header on some errors) go to
		// demo.log with the rest, not over the summary on the terminal.
		ErrorLog: slog.NewLogLogger(logger.With("component", "s3").Handler(), slog.LevelWarn)}}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("embedded s3 stopped", "err", err)
		}
	}()
	return s, nil
}

// url is the bucket's URL in edgeloop's objstore syntax.
func (s *s3Server) url(bucket string) string {
	return "s3://" + bucket + "?endpoint=" + s.addr + "&insecure=true"
}

func (s *s3Server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}
