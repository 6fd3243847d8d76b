package sample

import (
	"archive/tar"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// StoredVersion is the first byte of a record MarshalStored writes. It differs from
// RecordVersion so that ParseStored can tell a spool record (left in a write-ahead log written
// before stored records existed) from a stored one.
const StoredVersion = 2

// storedHeader is the version byte and the u32 lengths of the metadata JSON and index line.
const storedHeader = 1 + 4 + 4

// maxIndexLine bounds a stored record's index line. A valid sample's is shorter: its longest
// fields are four 128-byte names and two 256-byte texts (class name and request id), which
// JSON may escape to six bytes a byte: 3,849 bytes in all (TestIndexLineRequestID).
const maxIndexLine = 4 << 10

// Stored is a sample as the collector's write-ahead log holds it: validated and encoded once,
// at ingest, with its index entry decoded and its metadata JSON and index line kept as bytes,
// so that the shard builder writes them into a shard as they are instead of decoding and
// encoding every sample again (that cost the builder more than half of its time).
type Stored struct {
	// Entry is the sample's index entry.
	Entry IndexEntry
	// Meta is the content of the sample's <key>.json.
	Meta []byte
	// IndexLine is Entry as one line of a shard's JSONL index, without the newline.
	IndexLine []byte
	// Input is the content of the sample's input file, named Entry.Input.
	Input []byte
}

// MarshalStored encodes a sample that ReadTar returned, unchanged since, as a stored record:
// the version byte StoredVersion, the big-endian u32 lengths of the metadata JSON and of the
// index line, the metadata JSON, the index line, then the input bytes to the end. It does not
// validate the sample again (ReadTar did), which would double the collector's cost per sample;
// a sample from elsewhere is validated first.
func (s *Sample) MarshalStored() ([]byte, error) {
	meta := s.metaJSON
	if meta == nil {
		var err error
		if meta, err = s.validate(); err != nil {
			return nil, fmt.Errorf("sample: marshal stored record: %w", err)
		}
	}
	e := s.index(len(meta))
	line, err := marshalIndex(&e)
	if err != nil || len(line) > maxIndexLine {
		return nil, fmt.Errorf("sample: marshal stored record: index line of %d bytes: %v", len(line), err)
	}
	need := storedHeader + len(meta) + len(line)
	if off := len(s.frame) - len(s.Input); len(s.Input) > 0 && off >= need && &s.frame[off] == &s.Input[0] {
		// In place, in front of the input ReadTar read. The frame is the record's from now
		// on: a second call copies, so as not to write over the record this one returns.
		b := s.frame[off-need:]
		s.frame = nil
		b[0] = StoredVersion
		binary.BigEndian.PutUint32(b[1:], uint32(len(meta)))
		binary.BigEndian.PutUint32(b[5:], uint32(len(line)))
		copy(b[storedHeader:], meta)
		copy(b[storedHeader+len(meta):], line)
		return b, nil
	}
	b := make([]byte, storedHeader, need+len(s.Input))
	b[0] = StoredVersion
	binary.BigEndian.PutUint32(b[1:], uint32(len(meta)))
	binary.BigEndian.PutUint32(b[5:], uint32(len(line)))
	b = append(b, meta...)
	b = append(b, line...)
	return append(b, s.Input...), nil
}

// ParseStored decodes a record MarshalStored wrote, or a spool record MarshalRecord wrote,
// without validating the sample: only for records that were validated before being stored
// behind a checksum, such as the collector's write-ahead log (CRC32C per record). It checks
// what the shard builder relies on: the lengths, the index line's JSON, and the names and key
// that become object keys and member names. The result aliases b.
func ParseStored(b []byte) (*Stored, error) {
	st, err := parseStored(b)
	if err != nil {
		return nil, fmt.Errorf("sample: parse stored record: %w", err)
	}
	return st, nil
}

func parseStored(b []byte) (*Stored, error) {
	if len(b) > 0 && b[0] == RecordVersion {
		// A spool record, from a log written before stored records: re-encoded as one, so
		// that one encoder makes every index line. Rare, so the copy does not matter.
		s, err := unmarshalRecord(b, false)
		if err != nil {
			return nil, err
		}
		s.metaJSON = b[recordHeader : len(b)-len(s.Input)]
		if b, err = s.MarshalStored(); err != nil {
			return nil, err
		}
	}
	st, err := splitStored(b)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(st.IndexLine, &st.Entry); err != nil {
		return nil, fmt.Errorf("index line: %w", err)
	}
	e := &st.Entry
	file, keyed := strings.CutPrefix(e.Input, e.Key+".")
	switch {
	case !ValidKey(e.Key) || !ValidName(e.Model) || !ValidName(e.Version):
		return nil, fmt.Errorf("index line: invalid key %s, model %s or version %s", quote(e.Key), quote(e.Model), quote(e.Version))
	case !keyed || !validFile(file):
		return nil, fmt.Errorf("index line: input %s is not <key>.input.<ext>", quote(e.Input))
	case e.Bytes != int64(len(st.Meta)+len(st.Input)):
		return nil, fmt.Errorf("index line: %d bytes, but the record holds %d", e.Bytes, len(st.Meta)+len(st.Input))
	}
	return st, nil
}

// splitStored cuts a stored record into its metadata, index line and input, checking the
// lengths in its header but decoding nothing.
func splitStored(b []byte) (*Stored, error) {
	if len(b) < storedHeader {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), storedHeader)
	}
	if b[0] != StoredVersion {
		return nil, fmt.Errorf("record version %d, want %d or %d", b[0], StoredVersion, RecordVersion)
	}
	metaLen, lineLen := binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint32(b[5:])
	rest := b[storedHeader:]
	switch {
	case metaLen == 0 || metaLen > MaxMetaBytes:
		return nil, fmt.Errorf("metadata length %d, want 1 to %d", metaLen, MaxMetaBytes)
	case lineLen == 0 || lineLen > maxIndexLine:
		return nil, fmt.Errorf("index line length %d, want 1 to %d", lineLen, maxIndexLine)
	case uint64(metaLen)+uint64(lineLen) >= uint64(len(rest)):
		return nil, fmt.Errorf("metadata and index line of %d and %d bytes, but only %d bytes follow the header", metaLen, lineLen, len(rest))
	}
	return &Stored{Meta: rest[:metaLen], IndexLine: rest[metaLen : metaLen+lineLen], Input: rest[metaLen+lineLen:]}, nil
}

// StoredMembers returns the metadata JSON and the input of a record that ParseStored read
// before, without decoding its index line again: what the shard builder reads back from the
// log as it writes a shard's tar.
func StoredMembers(b []byte) (meta, input []byte, err error) {
	var st *Stored
	if len(b) > 0 && b[0] == RecordVersion {
		st, err = parseStored(b) // rare: re-encoded as ParseStored did
	} else {
		st, err = splitStored(b)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sample: stored record: %w", err)
	}
	return st.Meta, st.Input, nil
}

// StoredTarWriter writes a shard's tar one stored sample at a time, as WriteTar writes samples:
// the same bytes for the same samples, without holding them all. Keys must be distinct (the
// caller checks: a reader would reject the key).
type StoredTarWriter struct{ tw *tar.Writer }

// NewStoredTarWriter returns a StoredTarWriter writing to w.
func NewStoredTarWriter(w io.Writer) *StoredTarWriter { return &StoredTarWriter{tw: tar.NewWriter(w)} }

// Write writes one sample's members: <key>.json holding meta and the input member named by e
// holding input, dated e.Time.
func (t *StoredTarWriter) Write(e *IndexEntry, meta, input []byte) error {
	return writeTarSample(t.tw, tarSample{key: e.Key, inputName: e.Input, meta: meta, input: input, time: e.Time})
}

// Close writes the tar's end-of-archive marker; the underlying writer is not closed.
func (t *StoredTarWriter) Close() error {
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("sample: write tar: %w", err)
	}
	return nil
}

// StoredTarSize is the size of the tar a StoredTarWriter writes of samples whose metadata and
// inputs have the given sizes, one call per sample added to the running total of the tar's
// members; add StoredTarEnd once for the end-of-archive marker.
func StoredTarSize(metaBytes, inputBytes int) int64 {
	return 512 + pad512(int64(metaBytes)) + 512 + pad512(int64(inputBytes))
}

// StoredTarEnd is the size of a tar's end-of-archive marker (two zero blocks).
const StoredTarEnd = 1024

func pad512(n int64) int64 { return (n + 511) &^ 511 }
