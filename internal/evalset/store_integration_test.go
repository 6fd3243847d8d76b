//go:build integration

package evalset_test

import (
	"context"
	"testing"

	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestRoundTripMinIO runs the store test against a real MinIO server (make test provides it;
// in CI a missing server fails the test).
func TestRoundTripMinIO(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	cfg := objstore.S3Config{Endpoint: endpoint, Bucket: "evalsets", AccessKey: access, SecretKey: secret,
		Insecure: true, PartSize: objstore.DefaultPartSize, Prefix: "edge"}
	if err := objstore.CreateS3Bucket(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	roundTrip(t, b)
}
