package spool

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string // the whole message; "" for valid
	}{
		{name: "defaults", modify: func(*Config) {}},
		{name: "no age bound", modify: func(c *Config) { c.MaxAge = 0 }},
		{name: "block", modify: func(c *Config) { c.FullPolicy = PolicyBlock }},
		{name: "drop_newest", modify: func(c *Config) { c.FullPolicy = PolicyDropNewest }},
		{name: "record exactly fills max_bytes", modify: func(c *Config) { c.MaxBytes = 1000; c.MaxRecordBytes = 1000 - headerSize }},
		{
			name:   "max_bytes zero",
			modify: func(c *Config) { c.MaxBytes = 0 },
			want:   "max_bytes: must be positive, got 0",
		},
		{
			name:   "max_age negative",
			modify: func(c *Config) { c.MaxAge = -time.Hour },
			want:   "max_age: must not be negative (0 means no age bound), got -1h0m0s",
		},
		{
			name:   "segment_bytes too small",
			modify: func(c *Config) { c.SegmentBytes = 100 },
			want:   "segment_bytes: must be between 4096 and 1073741824, got 100",
		},
		{
			name:   "segment_bytes too large",
			modify: func(c *Config) { c.SegmentBytes = 2 << 30 },
			want:   "segment_bytes: must be between 4096 and 1073741824, got 2147483648",
		},
		{
			name:   "sync_interval zero",
			modify: func(c *Config) { c.SyncInterval = 0 },
			want:   "sync_interval: must be positive, got 0s",
		},
		{
			name:   "sync_records zero",
			modify: func(c *Config) { c.SyncRecords = 0 },
			want:   "sync_records: must be positive, got 0",
		},
		{
			name:   "unknown policy",
			modify: func(c *Config) { c.FullPolicy = "drop_random" },
			want:   `full_policy: must be one of "drop_oldest", "drop_newest", "block", got "drop_random"`,
		},
		{
			name:   "empty policy",
			modify: func(c *Config) { c.FullPolicy = "" },
			want:   `full_policy: must be one of "drop_oldest", "drop_newest", "block", got ""`,
		},
		{
			name:   "max_record_bytes zero",
			modify: func(c *Config) { c.MaxRecordBytes = 0 },
			want:   "max_record_bytes: must be positive, got 0",
		},
		{
			name:   "max_record_bytes above the limit",
			modify: func(c *Config) { c.MaxBytes = 4 << 30; c.MaxRecordBytes = 2 << 30 },
			want:   "max_record_bytes: must be at most 1073741824, got 2147483648",
		},
		{
			name:   "record larger than max_bytes",
			modify: func(c *Config) { c.MaxBytes = 1000; c.MaxRecordBytes = 1000 },
			want:   "max_record_bytes: must fit in max_bytes with its 28 bytes of framing: 1000 + 28 > 1000",
		},
		{
			name:   "several at once",
			modify: func(c *Config) { c.SyncInterval = -time.Second; c.SyncRecords = -1 },
			want:   "sync_interval: must be positive, got -1s\nsync_records: must be positive, got -1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate() = %v\nwant %s", err, tt.want)
			}
			// Messages are field errors, so a parent section can prefix its own path.
			if got := config.Nest("spool", err).Error(); !strings.HasPrefix(got, "spool.") {
				t.Fatalf("nested error %q does not start with the section's path", got)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	want := Config{
		MaxBytes:       1 << 30,
		MaxAge:         168 * time.Hour,
		SegmentBytes:   64 << 20,
		SyncInterval:   200 * time.Millisecond,
		SyncRecords:    1000,
		FullPolicy:     "drop_oldest",
		MaxRecordBytes: 16 << 20,
	}
	if got := DefaultConfig(); got != want {
		t.Fatalf("DefaultConfig() = %+v, want %+v", got, want)
	}
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SyncRecords = 0
	_, err := Open(t.TempDir(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "spool: config: sync_records: must be positive") {
		t.Fatalf("Open = %v, want the field error", err)
	}
}

func TestConfigYAML(t *testing.T) {
	c := DefaultConfig()
	err := config.Parse([]byte("max_bytes: 67108864\nmax_age: 24h\nsync_interval: 50ms\nfull_policy: block\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxBytes != 64<<20 || c.MaxAge != 24*time.Hour || c.SyncInterval != 50*time.Millisecond || c.FullPolicy != PolicyBlock || c.SyncRecords != 1000 {
		t.Fatalf("parsed %+v", c)
	}
	if err := config.Parse([]byte("max_byte: 1\n"), &c); err == nil {
		t.Fatal("an unknown key was accepted")
	}
}
