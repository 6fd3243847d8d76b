package sample

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrTooLarge is wrapped by ReadTar's error when a batch breaks a limit on the whole (Limits):
// the collector answers 413 and the sender splits the batch.
var ErrTooLarge = errors.New("batch too large")

// Limits bound what ReadTar accepts. A zero field takes DefaultLimits' value.
type Limits struct {
	// MaxSamples bounds the number of distinct keys in the batch.
	MaxSamples int
	// MaxMemberBytes bounds one member (file) of the tar; a sample with a larger member is
	// rejected, the rest of the batch is read.
	MaxMemberBytes int64
	// MaxTotalBytes bounds the uncompressed tar stream as a whole, headers included.
	MaxTotalBytes int64
}

// DefaultLimits returns the limits of docs/wire-format.md: 2,000 samples, members up to
// MaxInputBytes, 64 MiB of tar.
func DefaultLimits() Limits {
	return Limits{MaxSamples: 2000, MaxMemberBytes: MaxInputBytes, MaxTotalBytes: 64 << 20}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxSamples <= 0 {
		l.MaxSamples = d.MaxSamples
	}
	if l.MaxMemberBytes <= 0 {
		l.MaxMemberBytes = d.MaxMemberBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	return l
}

// Rejection is one sample of a batch that ReadTar did not accept.
type Rejection struct {
	// Key is the sample's key as its member names give it (shortened when absurdly long).
	Key string
	// Err says why; it is what the collector sends back to the node.
	Err error
}

// tarMode is the mode of every member WriteTar writes.
const tarMode = 0o644

// WriteTar writes samples as a tar: for each sample in order, "<key>.json" then
// "<key>.input.<ext>". The bytes depend only on the samples: members are plain USTAR regular
// files with mode 0644, uid and gid 0, no user or group names, and the sample's time (whole
// seconds) as modification time. Every sample is validated first, and keys must be distinct;
// nothing is written otherwise. The underlying writer is not closed.
func WriteTar(w io.Writer, samples []*Sample) error {
	files := make([]tarSample, len(samples))
	for i, s := range samples {
		meta, err := s.validate()
		if err != nil {
			return fmt.Errorf("sample: write tar: sample %d (%s): %w", i, s.Meta.Key, err)
		}
		files[i] = tarSample{key: s.Meta.Key, inputName: s.InputName(), meta: meta, input: s.Input, time: s.Meta.Time}
	}
	return writeTarSamples(w, files)
}

// tarSample is what a tar holds of one sample.
type tarSample struct {
	key, inputName string
	meta, input    []byte
	time           time.Time
}

func writeTarSamples(w io.Writer, samples []tarSample) error {
	seen := make(map[string]int, len(samples))
	for i, s := range samples {
		if j, dup := seen[s.key]; dup {
			// ReadTar would reject the key: one key, one sample per batch and shard.
			return fmt.Errorf("sample: write tar: samples %d and %d have the same key %s", j, i, s.key)
		}
		seen[s.key] = i
	}
	tw := tar.NewWriter(w)
	for _, s := range samples {
		if err := writeTarSample(tw, s); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("sample: write tar: %w", err)
	}
	return nil
}

// writeTarSample writes one sample's two members.
func writeTarSample(tw *tar.Writer, s tarSample) error {
	mtime := s.time.UTC().Truncate(time.Second)
	for _, f := range []struct {
		name string
		data []byte
	}{{s.key + ".json", s.meta}, {s.inputName, s.input}} {
		h := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Size:     int64(len(f.data)),
			Mode:     tarMode,
			ModTime:  mtime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("sample: write tar: %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("sample: write tar: %s: %w", f.name, err)
		}
	}
	return nil
}

// ReadTar reads a batch of samples, as WriteTar writes it, within lim, and returns them whole:
// ReadTarFunc with the samples collected. On an error it returns no sample.
func ReadTar(r io.Reader, lim Limits) ([]*Sample, []Rejection, error) {
	var samples []*Sample
	rejected, err := ReadTarFunc(r, lim, func(s *Sample) error {
		samples = append(samples, s)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return samples, rejected, nil
}

// ReadTarFunc reads a batch of samples, as WriteTar writes it, within lim, and passes each
// valid sample to emit as soon as both its members are read, so that a batch need not be held
// whole: what stays in memory is the samples whose two members are apart in the tar (none,
// as WriteTar writes them). Members may come in any order.
//
// Each problem of one sample — a missing or unexpected member, a member above
// lim.MaxMemberBytes, bad JSON, a key that is not the content's, any rule of Validate —
// rejects that key alone: the rejections are returned, in the order of each key's first
// member, once the tar is read. A key given twice before its sample is whole is rejected too;
// a member that comes after its key's sample was read whole (and emitted) is an error of the
// batch, as is a tar that cannot be read.
//
// The error is emit's, as it returned it, which stops the reading; or the reader's, wrapping
// ErrTooLarge when the batch breaks a limit on the whole. Samples emitted before an error
// stay emitted: a caller that stores them as they come keeps them.
func ReadTarFunc(r io.Reader, lim Limits, emit func(*Sample) error) ([]Rejection, error) {
	rejected, err := readTar(r, lim.withDefaults(), emit)
	var ee emitError
	if errors.As(err, &ee) {
		return nil, ee.err
	}
	if err != nil {
		return nil, fmt.Errorf("sample: read tar: %w", err)
	}
	return rejected, nil
}

// emitError carries an error of ReadTarFunc's emit out of readTar untouched.
type emitError struct{ err error }

func (e emitError) Error() string { return e.err.Error() }

// group is what a batch holds under one key.
type group struct {
	key         string
	meta, input []byte
	frame       []byte // input's buffer, room for a stored record's front included (Sample.frame)
	file        string // the input member's name after "<key>."
	err         error  // the first problem found; the key is rejected
	emitted     bool   // the sample was read whole and emitted; its bytes are let go
}

func readTar(r io.Reader, lim Limits, emit func(*Sample) error) ([]Rejection, error) {
	lr := &limitReader{r: r, left: lim.MaxTotalBytes, limit: lim.MaxTotalBytes}
	tr := tar.NewReader(lr)
	groups := map[string]*group{}
	var order []*group
	// A sample has two members; more than that many in all means junk or repeats, and each
	// costs a header to parse.
	maxMembers := 2 * lim.MaxSamples
	for members := 0; ; members++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, lr.cause(err)
		}
		key, suffix, _ := strings.Cut(h.Name, ".")
		if len(key) > 64 {
			key = key[:64] // a rejection need not echo a hostile name whole
		}
		g := groups[key]
		if g == nil {
			if len(groups) == lim.MaxSamples {
				return nil, fmt.Errorf("%w: more than %d samples", ErrTooLarge, lim.MaxSamples)
			}
			g = &group{key: key}
			groups[key] = g
			order = append(order, g)
		}
		if members == maxMembers {
			return nil, fmt.Errorf("%w: more than %d members (%d samples of 2 files)", ErrTooLarge, maxMembers, lim.MaxSamples)
		}
		if g.err != nil {
			continue // rejected already; Next skips the content
		}
		if g.emitted {
			// The sample may be stored already: rejecting its key now would answer it both
			// ways. The batch as a whole is malformed instead.
			return nil, fmt.Errorf("member %s repeats the key of a sample read whole before it: a batch holds each key once", quote(h.Name))
		}
		var dst *[]byte
		switch {
		case h.Typeflag != tar.TypeReg: // the reader turns the old '\x00' flag into TypeReg
			g.err = fmt.Errorf("member %s is not a regular file", quote(h.Name))
		case !ValidKey(key):
			g.err = fmt.Errorf("member %s: the name must be <key>.json or <key>.input.<ext> with a key of 32 lowercase hex digits", quote(h.Name))
		case suffix == "json":
			dst = &g.meta
		case validFile(suffix):
			dst = &g.input
			if g.input == nil {
				g.file = suffix
			}
		default:
			g.err = fmt.Errorf("member %s: unexpected file: a sample is <key>.json and <key>.input.<ext>", quote(h.Name))
		}
		if dst == nil {
			continue
		}
		switch {
		case *dst != nil:
			g.err = fmt.Errorf("duplicate key in the batch: a second %s member", quote(h.Name))
			continue
		case h.Size > lim.MaxMemberBytes:
			g.err = fmt.Errorf("member %s: %d bytes, above the limit of %d", quote(h.Name), h.Size, lim.MaxMemberBytes)
			continue
		case h.Size > lr.left:
			// Checked before allocating: the stream cannot hold what the header claims.
			return nil, fmt.Errorf("%w: member %s of %d bytes goes past the limit of %d bytes of tar", ErrTooLarge, quote(h.Name), h.Size, lim.MaxTotalBytes)
		}
		var data []byte
		if dst == &g.input && g.meta != nil {
			// The metadata came first, as WriteTar writes it: the stored record's front
			// (MarshalStored) is about its size, plus the index line.
			front := storedHeader + len(g.meta) + frameSlack
			g.frame = make([]byte, front+int(h.Size))
			data = g.frame[front:]
		} else {
			data = make([]byte, h.Size)
		}
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, lr.cause(fmt.Errorf("member %s: %w", quote(h.Name), err))
		}
		*dst = data
		if g.meta == nil || g.input == nil {
			continue
		}
		s, err := g.sample()
		g.meta, g.input, g.frame = nil, nil, nil // the sample holds what it needs
		if err != nil {
			g.err = err
			continue
		}
		g.emitted = true
		if err := emit(s); err != nil {
			return nil, emitError{err}
		}
	}
	var rejected []Rejection
	for _, g := range order {
		switch {
		case g.err != nil:
			rejected = append(rejected, Rejection{Key: g.key, Err: g.err})
		case !g.emitted:
			rejected = append(rejected, Rejection{Key: g.key, Err: g.missing()})
		}
	}
	return rejected, nil
}

// missing says which member an incomplete group lacks.
func (g *group) missing() error {
	if g.meta == nil {
		return fmt.Errorf("no %s.json member", g.key)
	}
	return fmt.Errorf("no %s.input.<ext> member", g.key)
}

// sample assembles and validates the group's sample, once both members are read.
func (g *group) sample() (*Sample, error) {
	meta, err := decodeMeta(g.meta)
	if err != nil {
		return nil, err
	}
	if meta.Key != g.key {
		return nil, fmt.Errorf("key mismatch: the members are named %s but the metadata's key is %s", g.key, quote(meta.Key))
	}
	if meta.Input.File != g.file {
		return nil, fmt.Errorf("the input member is %s.%s but the metadata's input.file is %s", g.key, g.file, quote(meta.Input.File))
	}
	s := &Sample{Meta: meta, Input: g.input, frame: g.frame}
	if s.metaJSON, err = s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// frameSlack is the room ReadTar leaves in front of an input for a stored record's index line
// and for metadata that encodes longer than it was sent: a typical index line is 250-400
// bytes; a record whose front does not fit is copied instead.
const frameSlack = 512

// limitReader reads at most left bytes and fails with ErrTooLarge when more follow.
type limitReader struct {
	r           io.Reader
	left, limit int64
	exceeded    bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		var b [1]byte
		n, err := l.r.Read(b[:])
		if n > 0 {
			l.exceeded = true
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// cause returns ErrTooLarge when the limit was hit (the tar reader may have wrapped or
// replaced it), else err.
func (l *limitReader) cause(err error) error {
	if l.exceeded {
		return fmt.Errorf("%w: more than %d bytes of tar", ErrTooLarge, l.limit)
	}
	return err
}
