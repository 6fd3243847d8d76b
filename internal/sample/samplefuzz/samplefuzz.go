// Package samplefuzz helps fuzz targets get past the content key check. A sample's key is a
// hash of its content (sample.Key), so a mutated sample almost never carries the right one,
// and a fuzzer mutating raw bytes spends its time on the key check's refusal. These functions
// recompute the key over the fuzzed content and write it where the format holds it (the
// metadata's "key" field and the tar members' names), leaving every other byte as fuzzed, so
// that most inputs reach the code after the check. Fuzz targets only; never use it to "repair"
// real data.
package samplefuzz

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"

	"github.com/edgeloop/edgeloop/internal/sample"
)

// keyFieldRE finds the metadata's key field. Only the first is rewritten: a fuzzed duplicate
// field stays, as the strict decoder must see it.
var keyFieldRE = regexp.MustCompile(`"key"\s*:\s*"[^"\\]*"`)

// FixMeta returns the metadata JSON raw with its key set to the key of its content and input,
// and that key. When raw does not decode as metadata, or has no key field, it is returned
// unchanged with key "".
func FixMeta(raw, input []byte) ([]byte, string) {
	var m sample.Meta
	if err := json.Unmarshal(raw, &m); err != nil {
		return raw, ""
	}
	loc := keyFieldRE.FindIndex(raw)
	if loc == nil {
		return raw, ""
	}
	key := sample.Key(m, input)
	out := make([]byte, 0, len(raw)+32)
	out = append(out, raw[:loc[0]]...)
	out = append(out, `"key":"`+key+`"`...)
	return append(out, raw[loc[1]:]...), key
}

// FixRecord returns a spool record (sample.MarshalRecord's format) with its metadata's key
// recomputed; a record whose header does not parse is returned unchanged.
func FixRecord(rec []byte) []byte {
	if len(rec) < 5 || rec[0] != sample.RecordVersion {
		return rec
	}
	n := binary.BigEndian.Uint32(rec[1:])
	rest := rec[5:]
	if uint64(n) > uint64(len(rest)) {
		return rec
	}
	meta, _ := FixMeta(rest[:n], rest[n:])
	out := make([]byte, 5, 5+len(meta)+len(rest)-int(n))
	out[0] = sample.RecordVersion
	binary.BigEndian.PutUint32(out[1:], uint32(len(meta)))
	out = append(out, meta...)
	return append(out, rest[n:]...)
}

type member struct {
	hdr  *tar.Header
	data []byte
}

// FixTar returns a batch tar whose samples carry the keys of their content: members are
// grouped by the name before the first ".", each group's <key>.json gets its key recomputed
// over the group's input member, and both members are renamed to the new key (the input
// member after the metadata's input.file when that is a plain name). Members are kept in
// order with their headers otherwise as fuzzed. What follows a member that does not read is
// dropped; data that is not a tar at all is returned unchanged.
func FixTar(data []byte) []byte {
	tr := tar.NewReader(bytes.NewReader(data))
	var members []member
	// A sparse member claims any size with a few bytes of input; reading it whole would make
	// one input take seconds. The budget keeps the rewritten tar near the size of what the
	// fuzzer gave, and only regular members are read (the reader refuses the rest unread).
	budget := int64(len(data)) + 1<<16
	for len(members) < 256 {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var body []byte
		if h.Typeflag == tar.TypeReg {
			if body, err = io.ReadAll(io.LimitReader(tr, budget)); err != nil && !errors.Is(err, io.EOF) {
				break
			}
			if budget -= int64(len(body)); budget <= 0 {
				break
			}
		}
		members = append(members, member{hdr: h, data: body})
	}
	if len(members) == 0 {
		return data
	}
	type group struct{ meta, input int }
	groups := map[string]*group{}
	var order []string
	for i, m := range members {
		key, suffix, _ := strings.Cut(m.hdr.Name, ".")
		g := groups[key]
		if g == nil {
			g = &group{meta: -1, input: -1}
			groups[key] = g
			order = append(order, key)
		}
		switch {
		case suffix == "json" && g.meta < 0:
			g.meta = i
		case strings.HasPrefix(suffix, "input.") && g.input < 0:
			g.input = i
		}
	}
	for _, k := range order {
		g := groups[k]
		if g.meta < 0 {
			continue
		}
		var input []byte
		if g.input >= 0 {
			input = members[g.input].data
		}
		meta, key := FixMeta(members[g.meta].data, input)
		if key == "" {
			continue
		}
		members[g.meta].data = meta
		members[g.meta].hdr.Name = key + ".json"
		if g.input >= 0 {
			_, suffix, _ := strings.Cut(members[g.input].hdr.Name, ".")
			var m sample.Meta
			if json.Unmarshal(meta, &m) == nil && m.Input.File != "" && !strings.ContainsAny(m.Input.File, "/\x00") {
				suffix = m.Input.File
			}
			members[g.input].hdr.Name = key + "." + suffix
		}
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		h := *m.hdr
		h.Size = int64(len(m.data))
		if err := tw.WriteHeader(&h); err != nil {
			return data
		}
		if _, err := tw.Write(m.data); err != nil {
			return data
		}
	}
	if err := tw.Close(); err != nil {
		return data
	}
	return b.Bytes()
}
