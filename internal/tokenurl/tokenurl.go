// Package tokenurl holds the one rule every edgeloop client that sends a bearer token follows:
// a token goes over https, or over plain http only to a loopback address or when the
// configuration says so explicitly (allow_insecure_token: true). A token sent in clear text
// across a site's network lets whoever listens there act as the node or the operator
// (docs/security.md).
package tokenurl

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Field is the configuration key that allows a token over plain http; every client section
// that sends a token names it so.
const Field = "allow_insecure_token"

// Check returns an error when a bearer token would travel in clear text to rawURL: the URL is
// http:// (not https://), a token is configured (hasToken), its host is not a loopback IP
// address (127.0.0.0/8, ::1) and allowInsecure is false. The message says how to fix it; the
// caller names its own URL field. A URL that does not parse is left to the caller's own check.
func Check(rawURL string, hasToken, allowInsecure bool) error {
	if !hasToken || allowInsecure {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || !strings.EqualFold(u.Scheme, "http") {
		return nil
	}
	if Loopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("sends a bearer token in clear text to %s: use https://, or set %s: true if the network path is trusted", u.Host, Field)
}

// Loopback reports whether host is a loopback IP address. A name, "localhost" included, is
// not: what it resolves to is outside this check's control.
func Loopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
