package sample

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// RecordVersion is the first byte of a record MarshalRecord writes.
const RecordVersion = 1

// recordHeader is the version byte and the u32 length of the metadata JSON.
const recordHeader = 1 + 4

// MaxRecordBytes bounds a record of either form (MarshalRecord's, MarshalStored's): header,
// metadata, index line and input at their limits.
const MaxRecordBytes = storedHeader + MaxMetaBytes + maxIndexLine + MaxInputBytes

// MarshalRecord encodes a valid sample as one spool record: the version byte RecordVersion,
// the big-endian u32 length of the metadata JSON, the metadata JSON, then the input bytes to
// the end. The metadata is the same JSON as the sample's <key>.json.
func (s *Sample) MarshalRecord() ([]byte, error) {
	meta, err := s.validate()
	if err != nil {
		return nil, fmt.Errorf("sample: marshal record: %w", err)
	}
	b := make([]byte, recordHeader, recordHeader+len(meta)+len(s.Input))
	b[0] = RecordVersion
	binary.BigEndian.PutUint32(b[1:], uint32(len(meta)))
	b = append(b, meta...)
	return append(b, s.Input...), nil
}

// UnmarshalRecord decodes a record MarshalRecord wrote and validates the sample. The sample's
// input aliases b.
func UnmarshalRecord(b []byte) (*Sample, error) {
	s, err := unmarshalRecord(b, true)
	if err != nil {
		return nil, fmt.Errorf("sample: unmarshal record: %w", err)
	}
	return s, nil
}

func unmarshalRecord(b []byte, validate bool) (*Sample, error) {
	if len(b) < recordHeader {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), recordHeader)
	}
	if b[0] != RecordVersion {
		return nil, fmt.Errorf("record version %d, want %d", b[0], RecordVersion)
	}
	n := binary.BigEndian.Uint32(b[1:])
	rest := b[recordHeader:]
	switch {
	case n == 0 || n > MaxMetaBytes:
		return nil, fmt.Errorf("metadata length %d, want 1 to %d", n, MaxMetaBytes)
	case uint64(n) > uint64(len(rest)):
		return nil, fmt.Errorf("metadata length %d, but only %d bytes follow the header", n, len(rest))
	}
	meta, err := decodeMeta(rest[:n])
	if err != nil {
		return nil, err
	}
	s := &Sample{Meta: meta, Input: rest[n:]}
	if validate {
		if err := s.Validate(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// decodeMeta decodes metadata JSON strictly: one object, no unknown fields, nothing after it.
// It normalises what JSON may spell two ways, so that the sample re-encodes identically: the
// time to UTC, and a null label to none.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) > MaxMetaBytes {
		return m, invalid("metadata is %d bytes, above the limit of %d", len(b), MaxMetaBytes)
	}
	if parseMeta(b, &m) {
		m.Time = m.Time.UTC()
		return m, nil
	}
	return decodeMetaJSON(b)
}

// decodeMetaJSON is decodeMeta by encoding/json, for what parseMeta leaves to it.
func decodeMetaJSON(b []byte) (Meta, error) {
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, invalid("metadata: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return m, invalid("metadata: data after the JSON object")
	}
	m.Time = m.Time.UTC()
	if string(m.Label) == "null" {
		m.Label = nil
	}
	return m, nil
}

// invalid returns an *InvalidError with one problem.
// Messages from the JSON decoder may quote the input (an unknown field's name), so they are
// shortened like quote does.
func invalid(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "..."
	}
	return &InvalidError{Problems: []string{msg}}
}

// maxMessage bounds one problem's message where it may quote hostile input.
const maxMessage = 256
