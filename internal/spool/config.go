package spool

import (
	"errors"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
)

// The full policies: what Append does when storing a record would pass MaxBytes.
const (
	// PolicyDropOldest drops the oldest unacked records to make room: the newest samples are
	// usually the most useful after a long outage.
	PolicyDropOldest = "drop_oldest"
	// PolicyDropNewest refuses the new record with ErrFull and keeps what is stored.
	PolicyDropNewest = "drop_newest"
	// PolicyBlock makes Append wait until Ack frees room or its context ends.
	PolicyBlock = "block"
)

const (
	// maxRecordLimit bounds MaxRecordBytes whatever the configuration: recovery trusts no
	// length above it, so a flipped high bit in a length cannot make it read gigabytes.
	maxRecordLimit = 1 << 30
	// minSegmentBytes keeps segments from being so small that every few records cost a file.
	minSegmentBytes = 4 << 10
	// maxSegmentBytes bounds one segment, which recovery reads into memory whole.
	maxSegmentBytes = 1 << 30
)

// Config is the exporter's `spool:` section: how much the capture spool may hold, for how
// long, and how often it makes appends durable.
type Config struct {
	// MaxBytes bounds the unacked records' bytes, framing included (28 bytes a record).
	// The files on disk can exceed it by up to about two segments (a partly acked oldest
	// segment and the one being written). Default 1 GiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxAge drops unacked records older than this (reason "age"); 0 keeps them until
	// MaxBytes needs their room. Default 168h (7 days).
	MaxAge time.Duration `yaml:"max_age"`
	// SegmentBytes is the size past which appends roll to a new segment file; whole segments
	// are what acks and drops delete. Between 4 KiB and 1 GiB; default 64 MiB.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// SyncInterval bounds how long an appended record waits for its fsync (group commit):
	// the power-loss window. Default 200ms.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// SyncRecords starts the fsync early once this many records are unsynced. Default 1000.
	SyncRecords int `yaml:"sync_records"`
	// FullPolicy is what Append does when a record does not fit in MaxBytes: "drop_oldest"
	// (default), "drop_newest" (Append returns ErrFull) or "block" (Append waits for acks).
	FullPolicy string `yaml:"full_policy"`
	// MaxRecordBytes is the largest record Append accepts; its framed size must fit in
	// MaxBytes. At most 1 GiB; default 16 MiB.
	MaxRecordBytes int64 `yaml:"max_record_bytes"`
}

// DefaultConfig returns the section's defaults.
func DefaultConfig() Config {
	return Config{
		MaxBytes:       1 << 30,
		MaxAge:         7 * 24 * time.Hour,
		SegmentBytes:   64 << 20,
		SyncInterval:   200 * time.Millisecond,
		SyncRecords:    1000,
		FullPolicy:     PolicyDropOldest,
		MaxRecordBytes: 16 << 20,
	}
}

// Validate checks the section; every message names the field it is about.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBytes <= 0 {
		errs = append(errs, config.Errorf("max_bytes", "must be positive, got %d", c.MaxBytes))
	}
	if c.MaxAge < 0 {
		errs = append(errs, config.Errorf("max_age", "must not be negative (0 means no age bound), got %s", c.MaxAge))
	}
	if c.SegmentBytes < minSegmentBytes || c.SegmentBytes > maxSegmentBytes {
		errs = append(errs, config.Errorf("segment_bytes", "must be between %d and %d, got %d", minSegmentBytes, maxSegmentBytes, c.SegmentBytes))
	}
	if c.SyncInterval <= 0 {
		errs = append(errs, config.Errorf("sync_interval", "must be positive, got %s", c.SyncInterval))
	}
	if c.SyncRecords <= 0 {
		errs = append(errs, config.Errorf("sync_records", "must be positive, got %d", c.SyncRecords))
	}
	switch c.FullPolicy {
	case PolicyDropOldest, PolicyDropNewest, PolicyBlock:
	default:
		errs = append(errs, config.Errorf("full_policy", "must be one of %q, %q, %q, got %q", PolicyDropOldest, PolicyDropNewest, PolicyBlock, c.FullPolicy))
	}
	switch {
	case c.MaxRecordBytes <= 0:
		errs = append(errs, config.Errorf("max_record_bytes", "must be positive, got %d", c.MaxRecordBytes))
	case c.MaxRecordBytes > maxRecordLimit:
		errs = append(errs, config.Errorf("max_record_bytes", "must be at most %d, got %d", maxRecordLimit, c.MaxRecordBytes))
	case c.MaxBytes > 0 && c.MaxRecordBytes+headerSize > c.MaxBytes:
		// Otherwise the largest record could never be stored, whatever was dropped.
		errs = append(errs, config.Errorf("max_record_bytes", "must fit in max_bytes with its %d bytes of framing: %d + %d > %d", headerSize, c.MaxRecordBytes, headerSize, c.MaxBytes))
	}
	return errors.Join(errs...)
}
