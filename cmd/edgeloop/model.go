package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeloop/edgeloop/cmd/internal/cli"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/retrain/publish"
)

// modelCommands are the subcommands of `edgeloop model`; docs/model-repository.md shows them
// at work.
func modelCommands() []command {
	return []command{
		{"keygen", "create an ed25519 signing key pair (edgeloop.key, edgeloop.pub)", runModelKeygen},
		{"sign", "write a signed edgeloop.json into a local version directory", runModelSign},
		{"verify", "check a local version directory against its signed manifest", runModelVerify},
		{"publish", "upload a local version directory to a repository as a new signed version", runModelPublish},
		{"alias", "point an alias (stable, canary, ...) at a version, or delete it", runModelAlias},
		{"ls", "list the models, versions and aliases of a repository", runModelLs},
	}
}

func modelUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgeloop model <command> [flags]\n\ncommands:")
	for _, c := range modelCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRepositories are URLs: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=true")
	fmt.Fprintln(w, "(credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). See docs/model-repository.md.")
}

// runModel is `edgeloop model`: it manages signing keys and the model repository.
func runModel(args []string, stdout, stderr io.Writer) int {
	return dispatch("edgeloop model", modelCommands(), modelUsage, args, stdout, stderr)
}

// modelFail reports a failure while running (exit 1).
func modelFail(stderr io.Writer, cmd, format string, args ...any) int {
	fmt.Fprintf(stderr, "edgeloop model %s: %s\n", cmd, fmt.Sprintf(format, args...))
	return exitFailure
}

// modelUsageError reports bad usage (exit 2).
func modelUsageError(stderr io.Writer, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// modelDir returns the single positional argument, the version directory.
func modelDir(fs *flag.FlagSet) (string, bool) {
	if fs.NArg() != 1 {
		return "", false
	}
	return fs.Arg(0), true
}

func newModelFlagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edgeloop model "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edgeloop model %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

func runModelKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newModelFlagSet("keygen", "", stderr)
	out := fs.String("out", "", "directory to write edgeloop.key and edgeloop.pub into (created, mode 0700; existing keys are never overwritten)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *out == "" || fs.NArg() != 0 {
		return modelUsageError(stderr, fs, "--out DIR is required and no arguments are taken")
	}
	kf, err := modelrepo.GenerateKey(*out)
	if err != nil {
		return modelFail(stderr, "keygen", "%v", err)
	}
	fmt.Fprintf(stdout, "key id %s\nprivate key %s (mode 0600: keep it secret; it signs models)\npublic key  %s (give it to exporters: model sync trusts it)\n", kf.KeyID, kf.Private, kf.Public)
	return exitOK
}

// modelStrings is a repeatable string flag.
type modelStrings = cli.Strings

// modelManifestFlags override what DraftManifest finds in a version directory.
type modelManifestFlags struct {
	model      string
	classes    string
	outputKind string
	parent     int64
	datasets   modelStrings
}

func (f *modelManifestFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.model, "model", "", "model name (default: from edgeloop.json or metrics.json in the directory)")
	fs.StringVar(&f.classes, "classes", "", "comma-separated class names in output order (default: from the directory or the model's \"classes\" metadata)")
	fs.StringVar(&f.outputKind, "output-kind", "", "what the first output holds: logits or probabilities (default: probabilities when a Softmax computes it)")
	fs.Int64Var(&f.parent, "parent", 0, "version this one was retrained from (default: metrics.json base_version)")
	fs.Var(&f.datasets, "dataset", "URI of data the version was trained on (repeatable)")
}

// draft builds the manifest of dir with the flags applied.
func (f *modelManifestFlags) draft(dir string) (*modelrepo.Manifest, error) {
	m, err := modelrepo.DraftManifest(dir)
	if err != nil {
		return nil, err
	}
	if f.model != "" {
		m.Model = f.model
	}
	if f.classes != "" {
		m.Classes = nil
		for c := range strings.SplitSeq(f.classes, ",") {
			m.Classes = append(m.Classes, strings.TrimSpace(c))
		}
	}
	if f.outputKind != "" {
		m.Output.Kind = f.outputKind
	}
	if f.parent != 0 {
		m.ParentVersion = f.parent
	}
	if len(f.datasets) > 0 {
		m.Datasets = f.datasets
	}
	return m, nil
}

func runModelSign(args []string, stdout, stderr io.Writer) int {
	fs := newModelFlagSet("sign", "DIR", stderr)
	key := fs.String("key", "", "private key file (edgeloop.key from `edgeloop model keygen`)")
	version := fs.Int64("version", 0, "version number to record (default: from edgeloop.json in the directory, else 1; publish assigns the real one)")
	var mf modelManifestFlags
	mf.register(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	dir, ok := modelDir(fs)
	if !ok || *key == "" {
		return modelUsageError(stderr, fs, "--key and one version directory are required")
	}
	signer, err := modelrepo.LoadSigner(*key)
	if err != nil {
		return modelFail(stderr, "sign", "%v", err)
	}
	m, err := mf.draft(dir)
	if err != nil {
		return modelFail(stderr, "sign", "%v", err)
	}
	if *version != 0 {
		m.Version = *version
	}
	if m.Version == 0 {
		m.Version = 1
	}
	signedM, err := modelrepo.SignDir(dir, *m, signer)
	if err != nil {
		return modelFail(stderr, "sign", "%v", err)
	}
	fmt.Fprintf(stdout, "signed %s version %d (%d files) with key %s: wrote %s/%s\n",
		signedM.Model, signedM.Version, len(signedM.Files), signer.KeyID(), dir, modelrepo.ManifestFile)
	return exitOK
}

// runModelVerify is shared with the lean edgeloop-exporter binary (cmd/internal/cli).
func runModelVerify(args []string, stdout, stderr io.Writer) int {
	return cli.RunModelVerify("edgeloop model", args, stdout, stderr)
}

func runModelPublish(args []string, stdout, stderr io.Writer) int {
	fs := newModelFlagSet("publish", "DIR", stderr)
	repoURL := fs.String("repo", "", "repository URL: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=true")
	key := fs.String("key", "", "private key file to sign the version with")
	version := fs.Int64("version", 0, "version number to publish as (default: one above the highest)")
	alias := fs.String("alias", "", "also point this alias (such as stable or canary) at the new version")
	maxBatch := fs.Int("max-batch-size", modelrepo.DefaultMaxBatchSize, "max_batch_size of the generated config.pbtxt")
	var evalSets evalSetsFlag
	fs.Var(&evalSets, "eval-set", "score the version on this evaluation set of the model in the repository (repeatable), as the retrain gate does, and store the metrics, the fitted temperature and the drift signals' reference in its manifest")
	var mf modelManifestFlags
	mf.register(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	dir, ok := modelDir(fs)
	if !ok || *repoURL == "" || *key == "" {
		return modelUsageError(stderr, fs, "--repo, --key and one version directory are required")
	}
	if *version < 0 {
		return modelUsageError(stderr, fs, "--version must be positive")
	}
	if *alias != "" {
		if err := modelrepo.ValidateAliasName(*alias); err != nil {
			return modelUsageError(stderr, fs, "--alias: %v", err)
		}
	}
	signer, err := modelrepo.LoadSigner(*key)
	if err != nil {
		return modelFail(stderr, "publish", "%v", err)
	}
	m, err := mf.draft(dir)
	if err != nil {
		return modelFail(stderr, "publish", "%v", err)
	}
	if m.Model == "" {
		return modelUsageError(stderr, fs, "--model is required: the directory does not name the model")
	}
	files, err := modelrepo.DirFiles(dir)
	if err != nil {
		return modelFail(stderr, "publish", "%v", err)
	}
	// A manifest from `sign` in the directory records where it was signed, not where it goes.
	m.Version, m.Created = 0, time.Time{}
	ctx, stop := signalContext()
	defer stop()
	bucket, err := objstore.Open(ctx, *repoURL)
	if err != nil {
		return modelUsageError(stderr, fs, "--repo: %v", err)
	}
	defer bucket.Close()
	if len(evalSets) > 0 {
		record, r, err := publish.MeasureForPublish(ctx, bucket, dir, m, evalSets, slog.New(slog.NewTextHandler(stderr, nil)))
		if err != nil {
			return modelFail(stderr, "publish", "%v", err)
		}
		files = append(files, record)
		fmt.Fprintf(stdout, "measured on %s: accuracy %.4f over %d samples, temperature %s, drift reference %s\n",
			strings.Join(evalSets, ", "), r.Accuracy, r.Samples, describeCalibration(r), map[bool]string{true: "stored", false: "none"}[r.DriftReference != nil])
	}
	repo := modelrepo.New(bucket)
	published, err := repo.Publish(ctx, m.Model, *m, files, signer, modelrepo.PublishOptions{Version: *version, MaxBatchSize: *maxBatch})
	if err != nil {
		return modelFail(stderr, "publish", "%v", err)
	}
	fmt.Fprintf(stdout, "published %s version %d (%d files, signed by key %s)\n", published.Model, published.Version, len(published.Files), signer.KeyID())
	if *alias != "" {
		if err := repo.SetSignedAlias(ctx, published.Model, *alias, published.Version, signer); err != nil {
			return modelFail(stderr, "publish", "version %d is published, but the alias was not set: %v", published.Version, err)
		}
		fmt.Fprintf(stdout, "alias %s -> version %d\n", *alias, published.Version)
	}
	return exitOK
}

// runModelAlias promotes or rolls back the exporters that follow an alias: one small write.
func runModelAlias(args []string, stdout, stderr io.Writer) int {
	fs := newModelFlagSet("alias", "ALIAS [VERSION]", stderr)
	repoURL := fs.String("repo", "", "repository URL: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=true")
	model := fs.String("model", "", "model name")
	del := fs.Bool("delete", false, "delete the alias instead of setting it")
	key := fs.String("key", "", "private key file: sign the alias with a growing sequence, so exporters refuse an older one written back (without it the alias is unsigned)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	want := 2
	if *del {
		want = 1
	}
	if *repoURL == "" || *model == "" || fs.NArg() != want {
		return modelUsageError(stderr, fs, "--repo, --model and ALIAS VERSION (or --delete ALIAS) are required")
	}
	alias := fs.Arg(0)
	if err := modelrepo.ValidateAliasName(alias); err != nil {
		return modelUsageError(stderr, fs, "%v", err)
	}
	var version int64
	if !*del {
		v, err := strconv.ParseInt(fs.Arg(1), 10, 64)
		if err != nil || v < 1 {
			return modelUsageError(stderr, fs, "VERSION must be a positive integer, got %q", fs.Arg(1))
		}
		version = v
	}
	ctx, stop := signalContext()
	defer stop()
	bucket, err := objstore.Open(ctx, *repoURL)
	if err != nil {
		return modelUsageError(stderr, fs, "--repo: %v", err)
	}
	defer bucket.Close()
	repo := modelrepo.New(bucket)
	if *del {
		if err := repo.DeleteAlias(ctx, *model, alias); err != nil {
			return modelFail(stderr, "alias", "%v", err)
		}
		fmt.Fprintf(stdout, "alias %s of %s deleted\n", alias, *model)
		return exitOK
	}
	if *key == "" {
		err = repo.SetAlias(ctx, *model, alias, version)
	} else {
		var signer *modelrepo.Signer
		if signer, err = modelrepo.LoadSigner(*key); err != nil {
			return modelUsageError(stderr, fs, "--key: %v", err)
		}
		err = repo.SetSignedAlias(ctx, *model, alias, version, signer)
	}
	if err != nil {
		return modelFail(stderr, "alias", "%v", err)
	}
	fmt.Fprintf(stdout, "alias %s of %s -> version %d\n", alias, *model, version)
	return exitOK
}

func runModelLs(args []string, stdout, stderr io.Writer) int {
	fs := newModelFlagSet("ls", "", stderr)
	repoURL := fs.String("repo", "", "repository URL: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=true")
	model := fs.String("model", "", "list only this model")
	var pubs modelStrings
	fs.Var(&pubs, "pub", "trusted public key file or directory (repeatable): adds a SIGNATURE column checking each manifest")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *repoURL == "" || fs.NArg() != 0 {
		return modelUsageError(stderr, fs, "--repo is required and no arguments are taken")
	}
	var verifier *modelrepo.Verifier
	if len(pubs) > 0 {
		v, err := modelrepo.LoadVerifier(pubs...)
		if err != nil {
			return modelFail(stderr, "ls", "%v", err)
		}
		verifier = v
	}
	target, err := objstore.ParseURL(*repoURL, os.LookupEnv)
	if err != nil {
		return modelUsageError(stderr, fs, "--repo: %v", err)
	}
	if target.Dir != "" {
		// Opening a directory bucket creates the directory; listing must not.
		if _, err := os.Stat(target.Dir); err != nil {
			return modelFail(stderr, "ls", "no repository at %s: %v", *repoURL, err)
		}
	}
	ctx, stop := signalContext()
	defer stop()
	bucket, err := target.Open(ctx)
	if err != nil {
		return modelFail(stderr, "ls", "%v", err)
	}
	defer bucket.Close()
	if err := modelList(ctx, modelrepo.New(bucket), *model, verifier, stdout); err != nil {
		return modelFail(stderr, "ls", "%v", err)
	}
	return exitOK
}

// accuracyColumns returns ls's two accuracy columns, so that each means one thing: the
// trainer's own accuracy on its evaluation split, and the gate's on its evaluation set ("-"
// where there is none). A version the controller published carries the gate's record
// (publish.GateFile) and the gate's score under "accuracy", the trainer's moved to
// "trainer_accuracy"; a version published by hand has only the trainer's, under "accuracy".
func accuracyColumns(m *modelrepo.Manifest) (trainer, gate string) {
	format := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', 4, 64)
	}
	acc, hasAcc := m.Metrics["accuracy"]
	if _, gated := m.Files[publish.GateFile]; gated {
		t, ok := m.Metrics["trainer_accuracy"]
		return format(t, ok), format(acc, hasAcc)
	}
	return format(acc, hasAcc), "-"
}

// modelList prints one row per version: the manifest is read without verification unless
// verifier is set, in which case the SIGNATURE column says whether an exporter would accept it.
func modelList(ctx context.Context, repo *modelrepo.Repository, only string, verifier *modelrepo.Verifier, w io.Writer) error {
	models := []string{only}
	if only == "" {
		var err error
		if models, err = repo.Models(ctx); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "MODEL\tVERSION\tCREATED\tTRAINER_ACC\tGATE_ACC\tALIASES\tKEY"
	if verifier != nil {
		header += "\tSIGNATURE"
	}
	fmt.Fprintln(tw, header)
	for _, model := range models {
		versions, err := repo.Versions(ctx, model)
		if err != nil {
			return err
		}
		aliases, err := repo.Aliases(ctx, model)
		if err != nil {
			return err
		}
		byVersion := map[int64][]string{}
		for name, v := range aliases {
			byVersion[v] = append(byVersion[v], name)
		}
		for _, v := range versions {
			created, trainerAcc, gateAcc, keyID := "-", "-", "-", "-"
			m, err := repo.UnverifiedManifest(ctx, model, v)
			if err != nil {
				created = "unreadable: " + modelrepo.Reason(err)
			} else {
				created = m.Created.UTC().Format(time.RFC3339)
				trainerAcc, gateAcc = accuracyColumns(m)
				if m.Signature != nil {
					keyID = m.Signature.KeyID
				}
			}
			names := byVersion[v]
			sort.Strings(names)
			aliasCol := strings.Join(names, ",")
			if aliasCol == "" {
				aliasCol = "-"
			}
			row := fmt.Sprintf("%s\t%d\t%s\t%s\t%s\t%s\t%s", model, v, created, trainerAcc, gateAcc, aliasCol, keyID)
			if verifier != nil {
				status := "ok"
				if _, err := repo.Manifest(ctx, model, v, verifier); err != nil {
					status = modelrepo.Reason(err)
				}
				row += "\t" + status
			}
			fmt.Fprintln(tw, row)
		}
	}
	return tw.Flush()
}
