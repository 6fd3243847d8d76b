package token

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
)

// maxLineBytes bounds one line of a credential list: far above any real entry.
const maxLineBytes = 1 << 20

// EachLine calls fn with the number (from 1) and the white-space separated fields of every
// line of data that holds any once a "#" comment is cut off: the line format of hash lists and
// of the collector's certificate lists. It goes on after an error, so that one check reports
// every bad line, and returns fn's errors and the scanner's (a line over 1 MiB) joined.
func EachLine(data []byte, fn func(n int, fields []string) error) error {
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if err := fn(n, fields); err != nil {
			errs = append(errs, err)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
