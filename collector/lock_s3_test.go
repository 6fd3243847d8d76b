package collector

import (
	"context"
	"errors"
	"testing"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// TestS3ConditionalWrites checks on MinIO what the hour lock of the shard builder relies on
// (docs/collector.md, "Dedup across collectors"): If-None-Match: * creates an object once, and
// If-Match replaces it only while its ETag is the one read.
func TestS3ConditionalWrites(t *testing.T) {
	ctx := context.Background()
	bucket := minioBucket(t)
	b, ok := bucket.(interface {
		PutIf(ctx context.Context, key string, data []byte, ifNoneMatch bool, ifMatch string) (string, error)
	})
	if !ok {
		t.Fatal("the S3 bucket has no PutIf")
	}
	const key = "locks/samples/fashion/3/dt=2026-03-14/hour=15"
	etag, err := b.PutIf(ctx, key, []byte("first"), true, "")
	if err != nil || etag == "" {
		t.Fatalf("create: %q, %v", etag, err)
	}
	if _, err := b.PutIf(ctx, key, []byte("second"), true, ""); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("create again: %v; want ErrPreconditionFailed", err)
	}
	if _, err := b.PutIf(ctx, key, []byte("third"), false, "0123456789abcdef0123456789abcdef"); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("replace with another ETag: %v; want ErrPreconditionFailed", err)
	}
	etag2, err := b.PutIf(ctx, key, []byte("fourth"), false, etag)
	if err != nil || etag2 == etag {
		t.Fatalf("replace with the ETag read: %q, %v", etag2, err)
	}
	if _, err := b.PutIf(ctx, key, []byte("fifth"), false, etag); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("replace with the old ETag: %v; want ErrPreconditionFailed", err)
	}
	data, _, err := objstore.ReadAll(ctx, bucket, key, 0)
	if err != nil || string(data) != "fourth" {
		t.Fatalf("content %q, %v; want fourth", data, err)
	}
}
