package ingest_test

import (
	"bytes"
	"os"
)

func writeFileErr(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
