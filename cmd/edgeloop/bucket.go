package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// bucketCommands are the subcommands of `edgeloop bucket`; docs/objstore.md shows them at
// work.
func bucketCommands() []command {
	return []command{
		{"create", "create the bucket (s3://) or directory (file://) a URL names; an existing one is kept", runBucketCreate},
		{"ls", "list the objects under a bucket URL (and an optional key prefix) with their sizes", runBucketLs},
	}
}

func bucketUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgeloop bucket <command> [flags] URL\n\ncommands:")
	for _, c := range bucketCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nBuckets are URLs: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=true")
	fmt.Fprintln(w, "(credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). See docs/objstore.md.")
}

// runBucket is `edgeloop bucket`: first-time setup and inspection of an object store.
func runBucket(args []string, stdout, stderr io.Writer) int {
	return dispatch("edgeloop bucket", bucketCommands(), bucketUsage, args, stdout, stderr)
}

func newBucketFlagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edgeloop bucket "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edgeloop bucket %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// bucketUsageError reports bad usage (exit 2).
func bucketUsageError(stderr io.Writer, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// bucketFail reports a failure while running (exit 1).
func bucketFail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "edgeloop bucket %s: %v\n", cmd, err)
	return exitFailure
}

// bucketTimeout bounds one command: a setup script must not hang on an unreachable endpoint.
const bucketTimeout = time.Minute

func runBucketCreate(args []string, stdout, stderr io.Writer) int {
	fs := newBucketFlagSet("create", "URL", stderr)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		return bucketUsageError(stderr, fs, "exactly one bucket URL is required")
	}
	rawURL := fs.Arg(0)
	target, err := objstore.ParseURL(rawURL, os.LookupEnv)
	if err != nil {
		return bucketUsageError(stderr, fs, "%v", err)
	}
	if target.HTTP != nil {
		return bucketUsageError(stderr, fs, "%s is a collector's read-only model repository: there is nothing to create", rawURL)
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, bucketTimeout)
	defer cancel()
	created, err := createBucket(ctx, target)
	if err != nil {
		return bucketFail(stderr, "create", err)
	}
	// Both outcomes succeed, so a setup script can run the command every time; the message
	// says which happened, because creating nothing is worth knowing.
	if created {
		fmt.Fprintf(stdout, "created %s\n", rawURL)
	} else {
		fmt.Fprintf(stdout, "%s exists already; nothing to do\n", rawURL)
	}
	return exitOK
}

// createBucket creates the directory or S3 bucket target names and reports whether it did;
// an existing one is left as it is. An S3 URL's prefix needs nothing created: S3 has no
// directories.
func createBucket(ctx context.Context, target objstore.Target) (bool, error) {
	if target.Dir != "" {
		if info, err := os.Stat(target.Dir); err == nil {
			if !info.IsDir() {
				return false, fmt.Errorf("create %s: exists and is not a directory", target.Dir)
			}
			return false, nil
		}
		b, err := objstore.NewFS(target.Dir)
		if err != nil {
			return false, err
		}
		return true, b.Close()
	}
	cfg := *target.S3
	exists, probeErr := s3BucketExists(ctx, cfg)
	if exists {
		return false, nil
	}
	if err := objstore.CreateS3Bucket(ctx, cfg); err != nil {
		// The listing's error often says more (a refused connection, a wrong key) than the
		// create's; show both when they differ.
		if probeErr != nil && probeErr.Error() != err.Error() {
			return false, fmt.Errorf("%w (listing it first: %v)", err, probeErr)
		}
		return false, err
	}
	return true, nil
}

// s3BucketExists lists at most one key of the bucket: a listing that succeeds proves the
// bucket is there. Any error (no such bucket, no permission, no server) is returned for the
// caller to explain if creating fails too.
func s3BucketExists(ctx context.Context, cfg objstore.S3Config) (bool, error) {
	cfg.Prefix = ""
	b, err := objstore.NewS3(cfg)
	if err != nil {
		return false, err
	}
	defer b.Close()
	errStop := errors.New("stop")
	err = b.Iter(ctx, "", false, func(string) error { return errStop })
	if err == nil || errors.Is(err, errStop) {
		return true, nil
	}
	return false, err
}

func runBucketLs(args []string, stdout, stderr io.Writer) int {
	fs := newBucketFlagSet("ls", "URL [PREFIX]", stderr)
	dirs := fs.Bool("d", false, "list one level only: keys up to the next '/' after PREFIX, \"directories\" once with a trailing '/'")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return bucketUsageError(stderr, fs, "a bucket URL and an optional key prefix are required")
	}
	rawURL, prefix := fs.Arg(0), fs.Arg(1)
	if err := objstore.ValidatePrefix(prefix); err != nil {
		return bucketUsageError(stderr, fs, "prefix: %v", err)
	}
	target, err := objstore.ParseURL(rawURL, os.LookupEnv)
	if err != nil {
		return bucketUsageError(stderr, fs, "%v", err)
	}
	if target.Dir != "" {
		// Opening a directory bucket creates the directory; listing must not.
		if _, err := os.Stat(target.Dir); err != nil {
			return bucketFail(stderr, "ls", fmt.Errorf("no bucket at %s (create it with 'edgeloop bucket create'): %w", rawURL, err))
		}
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, bucketTimeout)
	defer cancel()
	b, err := target.Open(ctx)
	if err != nil {
		return bucketFail(stderr, "ls", err)
	}
	defer b.Close()
	n, size, err := listBucket(ctx, b, prefix, !*dirs, stdout)
	if err != nil {
		return bucketFail(stderr, "ls", fmt.Errorf("%s: %w", rawURL, err))
	}
	// The total goes to stderr so that stdout stays one line per key for scripts.
	fmt.Fprintf(stderr, "%d objects, %d bytes\n", n, size)
	return exitOK
}

// listBucket prints SIZE, MODIFIED (UTC) and KEY for each object under prefix, and returns how
// many objects it printed and their total size. A "directory" of a one-level listing is shown
// with '-' for its size and time.
func listBucket(ctx context.Context, b objstore.Bucket, prefix string, recursive bool, w io.Writer) (int, int64, error) {
	var n int
	var total int64
	err := b.Iter(ctx, prefix, recursive, func(key string) error {
		if key != "" && key[len(key)-1] == '/' {
			fmt.Fprintf(w, "%12s  %-20s  %s\n", "-", "-", key)
			return nil
		}
		attrs, err := b.Attributes(ctx, key)
		if objstore.IsNotFound(err) {
			return nil // deleted since it was listed
		}
		if err != nil {
			return err
		}
		n++
		total += attrs.Size
		fmt.Fprintf(w, "%12d  %-20s  %s\n", attrs.Size, attrs.LastModified.UTC().Format(time.RFC3339), key)
		return nil
	})
	return n, total, err
}
