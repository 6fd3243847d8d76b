package sample_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
)

func TestWriteTarDeterministicLayout(t *testing.T) {
	a, b := newSample(t, 0), newSample(t, 1)
	first := writeTar(t, a, b)
	if second := writeTar(t, newSample(t, 0), newSample(t, 1)); !bytes.Equal(first, second) {
		t.Fatal("two writes of the same samples differ")
	}
	tr := tar.NewReader(bytes.NewReader(first))
	want := []string{a.MetaName(), a.InputName(), b.MetaName(), b.InputName()}
	for i, name := range want {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		s := a
		if i >= 2 {
			s = b
		}
		if h.Name != name || h.Typeflag != tar.TypeReg || h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 ||
			h.Uname != "" || h.Gname != "" || h.Format != tar.FormatUSTAR || len(h.PAXRecords) != 0 ||
			!h.ModTime.Equal(s.Meta.Time.Truncate(1e9)) {
			t.Errorf("member %d: %+v", i, h)
		}
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the members: %v", err)
	}
}

func TestWriteTarRefusesInvalid(t *testing.T) {
	bad := newSample(t, 1)
	bad.Meta.Node = ""
	var b bytes.Buffer
	err := sample.WriteTar(&b, []*sample.Sample{newSample(t, 0), bad})
	if err == nil || !strings.Contains(err.Error(), "sample 1 (") || !strings.Contains(err.Error(), "node: must be") {
		t.Fatalf("WriteTar = %v", err)
	}
	if b.Len() != 0 {
		t.Error("bytes were written before the invalid sample was found")
	}
}

func TestWriteTarRefusesDuplicateKeys(t *testing.T) {
	a := newSample(t, 0)
	var b bytes.Buffer
	err := sample.WriteTar(&b, []*sample.Sample{a, newSample(t, 1), a})
	if want := "sample: write tar: samples 0 and 2 have the same key " + a.Meta.Key; err == nil || err.Error() != want {
		t.Fatalf("WriteTar = %v, want %q", err, want)
	}
	if b.Len() != 0 {
		t.Error("bytes were written")
	}
}

func TestReadTarRoundTrip(t *testing.T) {
	var in []*sample.Sample
	for i := range 20 {
		s := newSample(t, i)
		if i%3 == 0 {
			s.Meta.Label = sample.IndexLabel(i % 10)
		}
		in = append(in, s)
	}
	out, rejected, err := sample.ReadTar(bytes.NewReader(writeTar(t, in...)), sample.Limits{})
	if err != nil || len(rejected) != 0 {
		t.Fatalf("ReadTar: %v, %v", rejected, err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d samples, want %d", len(out), len(in))
	}
	for i := range in {
		assertSame(t, out[i], in[i])
	}
}

// TestReadTarMemberOrder: members of a sample need not be adjacent nor in WriteTar's order.
func TestReadTarMemberOrder(t *testing.T) {
	a, b := newSample(t, 0), newSample(t, 1)
	ma, mb := members(t, a), members(t, b)
	out, rejected, err := sample.ReadTar(bytes.NewReader(rawTar(t, ma[1], mb[0], ma[0], mb[1])), sample.Limits{})
	if err != nil || len(rejected) != 0 || len(out) != 2 {
		t.Fatalf("ReadTar = %d, %v, %v", len(out), rejected, err)
	}
	assertSame(t, out[0], a)
	assertSame(t, out[1], b)
}

// TestReadTarRepeatAfterWhole: a member of a key whose sample was read whole already fails the
// batch, since the sample may be stored by then (ReadTarFunc emits it at once), while the
// samples emitted before stay emitted.
func TestReadTarRepeatAfterWhole(t *testing.T) {
	good, bad := newSample(t, 100), newSample(t, 0)
	key := bad.Meta.Key
	mb := members(t, bad)
	for name, extra := range map[string]member{
		"duplicate sample":  mb[0],
		"second input":      {name: key + ".input.png", data: []byte("png")},
		"unexpected member": {name: key + ".cls", data: []byte("7")},
	} {
		t.Run(name, func(t *testing.T) {
			all := append(members(t, good), mb[0], mb[1], extra)
			var emitted []string
			_, err := sample.ReadTarFunc(bytes.NewReader(rawTar(t, all...)), sample.Limits{}, func(s *sample.Sample) error {
				emitted = append(emitted, s.Meta.Key)
				return nil
			})
			want := `member "` + extra.name + `" repeats the key of a sample read whole before it`
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("ReadTarFunc error %v, want %q", err, want)
			}
			if !slices.Equal(emitted, []string{good.Meta.Key, key}) {
				t.Errorf("emitted %v before the error, want both samples", emitted)
			}
			if out, rejected, err := sample.ReadTar(bytes.NewReader(rawTar(t, all...)), sample.Limits{}); err == nil || out != nil || rejected != nil {
				t.Errorf("ReadTar = %d samples, %v, %v; want only the error", len(out), rejected, err)
			}
		})
	}
}

// TestReadTarFuncStops: emit's error stops the reading and comes back as it was returned.
func TestReadTarFuncStops(t *testing.T) {
	a, b := newSample(t, 1), newSample(t, 2)
	stop := errors.New("stop here")
	calls := 0
	_, err := sample.ReadTarFunc(bytes.NewReader(rawTar(t, append(members(t, a), members(t, b)...)...)), sample.Limits{}, func(*sample.Sample) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("ReadTarFunc = %v after %d calls, want emit's error after 1", err, calls)
	}
}

// TestReadTarRejects builds batches of a good sample and one broken one: the broken sample is
// rejected with its key and reason, the good one still comes back.
func TestReadTarRejects(t *testing.T) {
	good := newSample(t, 100)
	bad := newSample(t, 0)
	key := bad.Meta.Key
	mb := members(t, bad)
	metaWith := func(change func(m *sample.Meta)) []byte {
		m := bad.Meta
		change(&m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A sample whose key is right for its content but which breaks a rule.
	invalidMeta := bad.Meta
	invalidMeta.Prediction = 12
	invalidMeta.Key = sample.Key(invalidMeta, bad.Input)
	invalidJSON, _ := json.Marshal(invalidMeta)
	tests := []struct {
		name    string
		members []member
		key     string
		want    string
	}{
		{"no input", mb[:1], key, "no " + key + ".input.<ext> member"},
		{"no json", mb[1:], key, "no " + key + ".json member"},
		{"bad json", []member{{name: key + ".json", data: []byte("{")}, mb[1]}, key, "invalid sample: metadata: unexpected EOF"},
		{"second json", []member{mb[0], {name: key + ".json", data: mb[0].data}, mb[1]}, key, `duplicate key in the batch: a second "` + key + `.json" member`},
		{"unexpected member", []member{mb[0], {name: key + ".cls", data: []byte("7")}, mb[1]}, key,
			`member "` + key + `.cls": unexpected file: a sample is <key>.json and <key>.input.<ext>`},
		{"unknown field", []member{{name: key + ".json", data: []byte(`{"colour":1}`)}, mb[1]}, key, `invalid sample: metadata: json: unknown field "colour"`},
		{"key mismatch", []member{{name: key + ".json", data: metaWith(func(m *sample.Meta) { m.Key = good.Meta.Key })}, mb[1]}, key,
			"key mismatch: the members are named " + key + " but the metadata's key is \"" + good.Meta.Key + "\""},
		{"content not the key's", []member{mb[0], {name: mb[1].name, data: npyInput(t, 1)}}, key, "invalid sample: key: " + key + " does not match the sample's content"},
		{"invalid", []member{{name: invalidMeta.Key + ".json", data: invalidJSON}, {name: invalidMeta.Key + ".input.npy", data: bad.Input}}, invalidMeta.Key,
			"invalid sample: prediction: must be a class index below the 10 scores, got 12"},
		{"input file mismatch", []member{mb[0], {name: key + ".input.png", data: bad.Input}}, key,
			"the input member is " + key + ".input.png but the metadata's input.file is \"input.npy\""},
		{"symlink", []member{mb[0], {name: mb[1].name, typeflag: tar.TypeSymlink}}, key, `member "` + key + `.input.npy" is not a regular file`},
		{"directory", []member{{name: "samples/", typeflag: tar.TypeDir}}, "samples/", `member "samples/" is not a regular file`},
		{"bad key", []member{{name: "../../etc/passwd", data: []byte("x")}}, "", `member "../../etc/passwd": the name must be <key>.json or <key>.input.<ext> with a key of 32 lowercase hex digits`},
		{"upper-case key", []member{{name: strings.ToUpper(key) + ".json", data: mb[0].data}}, strings.ToUpper(key), `member "` + strings.ToUpper(key) + `.json": the name must be <key>.json`},
		{"member too large", []member{mb[0], {name: mb[1].name, data: make([]byte, 5000)}}, key, `member "` + key + `.input.npy": 5000 bytes, above the limit of 4096`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := append(members(t, good), tt.members...)
			out, rejected, err := sample.ReadTar(bytes.NewReader(rawTar(t, all...)), sample.Limits{MaxMemberBytes: 4096})
			if err != nil {
				t.Fatalf("ReadTar: %v", err)
			}
			if len(out) != 1 {
				t.Fatalf("%d samples back, want the good one", len(out))
			}
			assertSame(t, out[0], good)
			if len(rejected) != 1 {
				t.Fatalf("rejected %v, want one", rejected)
			}
			if rejected[0].Key != tt.key {
				t.Errorf("rejected key %q, want %q", rejected[0].Key, tt.key)
			}
			if !strings.HasPrefix(rejected[0].Err.Error(), tt.want) {
				t.Errorf("rejection:\n got %q\nwant %q...", rejected[0].Err, tt.want)
			}
		})
	}
}

func TestReadTarWholeBatchErrors(t *testing.T) {
	three := writeTar(t, newSample(t, 0), newSample(t, 1), newSample(t, 2))
	tests := []struct {
		name     string
		data     []byte
		lim      sample.Limits
		tooLarge bool
		want     string
	}{
		{"not a tar", bytes.Repeat([]byte("not a tar "), 100), sample.Limits{}, false, "sample: read tar: archive/tar: invalid tar header"},
		{"truncated", three[:len(three)/2], sample.Limits{}, false, "sample: read tar: member"},
		{"too many samples", three, sample.Limits{MaxSamples: 2}, true, "sample: read tar: batch too large: more than 2 samples"},
		{"too many members", rawTar(t, member{name: "a"}, member{name: "a"}, member{name: "a"}), sample.Limits{MaxSamples: 1}, true,
			"sample: read tar: batch too large: more than 2 members (1 samples of 2 files)"},
		{"too many bytes", three, sample.Limits{MaxTotalBytes: 8000}, true, "sample: read tar: batch too large:"},
		{"too many bytes after the members", append(bytes.Clone(three), make([]byte, 4096)...), sample.Limits{MaxTotalBytes: int64(len(three))}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, rejected, err := sample.ReadTar(bytes.NewReader(tt.data), tt.lim)
			if tt.want == "" {
				if err != nil || len(out) != 3 {
					t.Fatalf("ReadTar = %d, %v: padding after the end-of-archive marker is not read", len(out), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %d samples, %v rejected", len(out), rejected)
			}
			if out != nil || rejected != nil {
				t.Error("samples returned with a whole-batch error")
			}
			if errors.Is(err, sample.ErrTooLarge) != tt.tooLarge {
				t.Errorf("errors.Is(%v, ErrTooLarge) = %v", err, !tt.tooLarge)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n got %q\nwant %q...", err, tt.want)
			}
		})
	}
}

// TestTarReadableAsWebDataset writes a shard file the way the collector will and reads it back
// by the rules the reference trainer (internal/dataset.ReadLabelled) and WebDataset readers
// follow: members grouped by the name up to the first dot, "json" and "input.npy" by their
// extension, the label from the JSON's "label" field, the input a .npy array of 784 values.
// The cross-check in trainers/go (TestReadsCapturedShards) reads such a file itself.
func TestTarReadableAsWebDataset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shard-000000.tar")
	labelled := newSample(t, 0)
	labelled.Meta.Label = sample.IndexLabel(7)
	named := newSample(t, 1)
	named.Meta.Label = sample.NameLabel("Sneaker")
	unlabelled := newSample(t, 2)
	if err := os.WriteFile(path, writeTar(t, labelled, named, unlabelled), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byKey := map[string]map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		key, ext, _ := strings.Cut(h.Name, ".")
		data, _ := io.ReadAll(tr)
		if byKey[key] == nil {
			byKey[key] = map[string][]byte{}
		}
		byKey[key][ext] = data
	}
	wantLabels := map[string]string{labelled.Meta.Key: "7", named.Meta.Key: `"Sneaker"`, unlabelled.Meta.Key: ""}
	for key, want := range wantLabels {
		files := byKey[key]
		var meta struct {
			Label json.RawMessage `json:"label"`
		}
		if err := json.Unmarshal(files["json"], &meta); err != nil {
			t.Fatal(err)
		}
		if string(meta.Label) != want {
			t.Errorf("%s: label %s, want %s", key, meta.Label, want)
		}
		a, err := npy.Read(bytes.NewReader(files["input.npy"]))
		if err != nil || len(a.Data) != 784 {
			t.Errorf("%s: input.npy: %v", key, err)
		}
	}
}
