//go:build integration

package packages

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// need skips the test with why, or fails it under CI=true, where everything must be there.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// run runs a command and returns its combined output, failing the test when it fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := command(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func command(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil // dpkg must never wait for an answer: a conffile prompt fails instead
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nfpmPath is $NFPM, or the pinned nfpm from scripts/tools.sh (which installs it the first time:
// about 45 s).
func nfpmPath(t *testing.T) string {
	if p := os.Getenv("NFPM"); p != "" {
		return p
	}
	out, err := exec.Command("../../scripts/tools.sh", "path", "nfpm").Output()
	need(t, err == nil, fmt.Sprintf("nfpm: scripts/tools.sh path nfpm: %v", err))
	return strings.TrimSpace(string(out))
}

// TestPackages builds the packages as `make packages` does (build.sh) from binaries built here,
// checks the RPMs' contents, then in a throwaway root (dpkg --root, maintainer scripts run
// without chroot under DPKG_ROOT) installs both .debs, checks files, owners, modes, conffiles,
// the user and the state directories, verifies the units with systemd-analyze and the shipped
// configurations with --config.check, upgrades (a changed configuration and the spool kept),
// removes (configuration and state kept) and purges (both gone).
func TestPackages(t *testing.T) {
	start := time.Now()
	need(t, runtime.GOARCH == "amd64", "the package test packages binaries built for this machine as amd64")
	need(t, os.Geteuid() == 0, "dpkg --root and the maintainer scripts' useradd --root need root")
	for _, tool := range []string{"dpkg", "dpkg-query", "dpkg-deb", "systemd-analyze", "useradd", "groupadd", "usermod", "rpm"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" not found (scripts/debs.sh installs systemd, passwd and rpm)")
	}
	nfpm := nfpmPath(t)
	work := t.TempDir()

	// The binaries, built as `make exporter` and `make build` do, concurrently.
	exporterBin, edgeloopBin := filepath.Join(work, "edgeloop-exporter"), filepath.Join(work, "edgeloop")
	parallel(t,
		func() (string, error) {
			return command(nil, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", exporterBin, "github.com/edgeloop/edgeloop/cmd/edgeloop-exporter")
		},
		func() (string, error) {
			return command(nil, "go", "build", "-o", edgeloopBin, "github.com/edgeloop/edgeloop/cmd/edgeloop")
		})
	built := time.Now()

	// Version 1 as .deb and .rpm; the exporter's version 1.0.1 (the upgrade) as .deb. Concurrently:
	// compressing the full binary (85 MB) takes most of the test's time.
	v1, v2 := filepath.Join(work, "v1"), filepath.Join(work, "v2")
	env := []string{"NFPM=" + nfpm, "SOURCE_DATE_EPOCH=1700000000"}
	parallel(t,
		func() (string, error) {
			return command(env, "./build.sh", v1, "v1.0.0", "amd64", exporterBin, edgeloopBin)
		},
		func() (string, error) {
			return command(append(env, "FORMATS=deb", "PACKAGES=edgeloop-exporter"), "./build.sh", v2, "v1.0.1", "amd64", exporterBin, edgeloopBin)
		})
	packaged := time.Now()

	t.Run("rpm", func(t *testing.T) { checkRPMs(t, v1) })

	root := seedRoot(t, filepath.Join(work, "root"))
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
	}
	// Install.
	dpkg("--install", filepath.Join(v1, "edgeloop-exporter_1.0.0-1_amd64.deb"), filepath.Join(v1, "edgeloop_1.0.0-1_amd64.deb"))
	checkStatus(t, root, "edgeloop-exporter", "install ok installed", "1.0.0-1")
	checkStatus(t, root, "edgeloop", "install ok installed", "1.0.0-1")
	uid, gid := checkUser(t, root)
	files := []struct {
		path      string
		mode      fs.FileMode
		uid, gid  int
		directory bool
	}{
		{"usr/bin/edgeloop-exporter", 0o755, 0, 0, false},
		{"usr/bin/edgeloop", 0o755, 0, 0, false},
		{"usr/lib/systemd/system/edgeloop-exporter.service", 0o644, 0, 0, false},
		{"usr/lib/systemd/system/edgeloop-collector.service", 0o644, 0, 0, false},
		{"usr/lib/systemd/system/edgeloop-retrain.service", 0o644, 0, 0, false},
		{"etc/edgeloop", 0o755, 0, 0, true},
		{"etc/edgeloop/exporter.yaml", 0o644, 0, 0, false},
		{"etc/edgeloop/collector.yaml", 0o644, 0, 0, false},
		{"etc/edgeloop/retrain.yaml", 0o644, 0, 0, false},
		{"var/lib/edgeloop", 0o755, 0, 0, true},
		{"var/lib/edgeloop/models", 0o750, uid, gid, true},
		{"var/lib/edgeloop/spool", 0o750, uid, gid, true},
		{"var/lib/edgeloop/deadletter", 0o750, uid, gid, true},
		{"var/lib/edgeloop/collector", 0o750, uid, gid, true},
		{"var/lib/edgeloop/retrain", 0o750, uid, gid, true},
	}
	for _, f := range files {
		fi, err := os.Lstat(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("after install: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.IsDir() != f.directory || fi.Mode().Perm() != f.mode || int(st.Uid) != f.uid || int(st.Gid) != f.gid {
			t.Errorf("/%s: directory %v, mode %v, owner %d:%d; want directory %v, mode %v, owner %d:%d",
				f.path, fi.IsDir(), fi.Mode().Perm(), st.Uid, st.Gid, f.directory, f.mode, f.uid, f.gid)
		}
	}
	checkConffiles(t, root, "edgeloop-exporter", "/etc/edgeloop/exporter.yaml")
	checkConffiles(t, root, "edgeloop", "/etc/edgeloop/collector.yaml", "/etc/edgeloop/retrain.yaml")
	if out := run(t, nil, filepath.Join(root, "usr/bin/edgeloop-exporter"), "version"); !strings.Contains(out, "edgeloop") {
		t.Errorf("edgeloop-exporter version: %q", out)
	}

	t.Run("systemd-analyze verify", func(t *testing.T) { verifyUnits(t, root) })
	t.Run("configurations", func(t *testing.T) { checkConfigs(t, root, work) })

	// Upgrade the exporter: a site's configuration change and the spool must come through.
	exporterYAML := filepath.Join(root, "etc/edgeloop/exporter.yaml")
	changed := append(readFile(t, exporterYAML), []byte("# site change: kept across upgrades\n")...)
	writeFile(t, exporterYAML, changed)
	spoolFile := filepath.Join(root, "var/lib/edgeloop/spool/00000000000000000001.seg")
	walFile := filepath.Join(root, "var/lib/edgeloop/collector/wal/00000000000000000001.seg")
	if err := os.MkdirAll(filepath.Dir(walFile), 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, spoolFile, []byte("spooled samples"))
	writeFile(t, walFile, []byte("logged samples"))
	dpkg("--install", filepath.Join(v2, "edgeloop-exporter_1.0.1-1_amd64.deb"))
	checkStatus(t, root, "edgeloop-exporter", "install ok installed", "1.0.1-1")
	if got := readFile(t, exporterYAML); !bytes.Equal(got, changed) {
		t.Errorf("upgrade: /etc/edgeloop/exporter.yaml lost the site's change:\n%s", got)
	}
	if _, err := os.Stat(spoolFile); err != nil {
		t.Errorf("upgrade: the spool must stay: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, "etc/edgeloop/*.dpkg-*"))
	if len(leftovers) != 0 {
		t.Errorf("upgrade left %v: the packaged configuration changed under a site's change", leftovers)
	}

	// Remove: programs and units gone, configuration and state kept.
	dpkg("--remove", "edgeloop-exporter")
	checkStatus(t, root, "edgeloop-exporter", "deinstall ok config-files", "1.0.1-1")
	for _, gone := range []string{"usr/bin/edgeloop-exporter", "usr/lib/systemd/system/edgeloop-exporter.service"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("after remove: /%s: %v, want it gone", gone, err)
		}
	}
	if got := readFile(t, exporterYAML); !bytes.Equal(got, changed) {
		t.Errorf("remove: /etc/edgeloop/exporter.yaml changed or gone")
	}
	if _, err := os.Stat(spoolFile); err != nil {
		t.Errorf("remove: the spool must stay: %v", err)
	}

	// Purge: configuration and state gone; the other package's are untouched.
	dpkg("--purge", "edgeloop-exporter")
	for _, gone := range []string{"etc/edgeloop/exporter.yaml", "var/lib/edgeloop/spool", "var/lib/edgeloop/models", "var/lib/edgeloop/deadletter"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("after purge: /%s: %v, want it gone", gone, err)
		}
	}
	for _, kept := range []string{walFile, filepath.Join(root, "etc/edgeloop/collector.yaml"), filepath.Join(root, "usr/bin/edgeloop")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("purging edgeloop-exporter touched edgeloop's files: %v", err)
		}
	}
	dpkg("--purge", "edgeloop")
	for _, gone := range []string{"etc/edgeloop", "var/lib/edgeloop", "usr/bin/edgeloop"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("after purging both: /%s: %v, want it gone", gone, err)
		}
	}
	if out, _ := command(nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "edgeloop", "edgeloop-exporter"); strings.Contains(out, "1.0.") {
		t.Errorf("after purge dpkg still knows the packages: %s", out)
	}

	t.Run("rpm scriptlets", func(t *testing.T) { rpmScriptlets(t, filepath.Join(work, "rpmroot")) })
	t.Logf("build %v, package %v, the rest %v", built.Sub(start).Round(time.Second), packaged.Sub(built).Round(time.Second), time.Since(packaged).Round(time.Second))
}

// parallel runs the steps concurrently and fails the test with the output of each that failed.
func parallel(t *testing.T, steps ...func() (string, error)) {
	t.Helper()
	var wg sync.WaitGroup
	outs, errs := make([]string, len(steps)), make([]error, len(steps))
	for i, step := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = step()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("step %d: %v\n%s", i, err, outs[i])
		}
	}
}

// seedRoot lays out the least a root needs for dpkg and the maintainer scripts: the account
// files (with Debian's video group), an empty dpkg database that knows libc6 (the packages'
// dependency), and /usr/sbin/nologin for useradd's check.
func seedRoot(t *testing.T, root string) string {
	t.Helper()
	for _, d := range []string{"etc", "usr/sbin", "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"))
	writeFile(t, filepath.Join(root, "etc/group"), []byte("root:x:0:\nvideo:x:44:\n"))
	writeFile(t, filepath.Join(root, "etc/shadow"), []byte("root:*:19000:0:99999:7:::\n"))
	writeFile(t, filepath.Join(root, "etc/gshadow"), []byte("root:*::\nvideo:*::\n"))
	writeFile(t, filepath.Join(root, "usr/sbin/nologin"), []byte("#!/bin/sh\nexit 1\n"))
	if err := os.Chmod(filepath.Join(root, "usr/sbin/nologin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), []byte("Package: libc6\nStatus: install ok installed\n"+
		"Priority: required\nArchitecture: amd64\nMaintainer: test\nVersion: 2.36-9\nDescription: stand-in for the host's\n\n"))
	writeFile(t, filepath.Join(root, "var/lib/dpkg/info/libc6.list"), nil)
	writeFile(t, filepath.Join(root, "var/lib/dpkg/available"), nil)
	return root
}

func checkStatus(t *testing.T, root, pkg, status, version string) {
	t.Helper()
	out := run(t, nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Status}|${Version}", pkg)
	if want := status + "|" + version; out != want {
		t.Errorf("dpkg-query %s: %q, want %q", pkg, out, want)
	}
}

// checkUser checks the system user and group the scripts created, and returns their IDs.
func checkUser(t *testing.T, root string) (uid, gid int) {
	t.Helper()
	passwd := fields(t, filepath.Join(root, "etc/passwd"), "edgeloop")
	group := fields(t, filepath.Join(root, "etc/group"), "edgeloop")
	video := fields(t, filepath.Join(root, "etc/group"), "video")
	if passwd == nil || group == nil {
		t.Fatalf("no edgeloop user or group in the root's account files")
	}
	uid, _ = strconv.Atoi(passwd[2])
	gid, _ = strconv.Atoi(group[2])
	if uid == 0 || uid >= 1000 || passwd[3] != group[2] || passwd[5] != "/var/lib/edgeloop" || passwd[6] != "/usr/sbin/nologin" {
		t.Errorf("user: %q, want a system user (uid 1-999) in group edgeloop, home /var/lib/edgeloop, shell nologin", passwd)
	}
	if video == nil || video[3] != "edgeloop" {
		t.Errorf("group video: %q, want member edgeloop", video)
	}
	return uid, gid
}

// fields returns the colon-separated fields of name's line in an account file, nil if none.
func fields(t *testing.T, file, name string) []string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, file)))
	for sc.Scan() {
		if f := strings.Split(sc.Text(), ":"); f[0] == name {
			return f
		}
	}
	return nil
}

func checkConffiles(t *testing.T, root, pkg string, want ...string) {
	t.Helper()
	out := run(t, nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Conffiles}", pkg)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			got = append(got, f[0])
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s's conffiles: %q, want %q", pkg, got, want)
	}
}

// verifyUnits runs systemd-analyze verify on the installed units. The root gets what verify
// resolves besides them: the host's targets and slices, and /bin/kill (ExecReload). Any output
// (an unknown key, a bad value) fails, not only the exit status.
func verifyUnits(t *testing.T, root string) {
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	hostUnits, _ := filepath.Glob("/usr/lib/systemd/system/*.target")
	slices, _ := filepath.Glob("/usr/lib/systemd/system/*.slice")
	need(t, len(hostUnits) > 0, "no systemd targets in /usr/lib/systemd/system to verify against")
	for _, f := range append(hostUnits, slices...) {
		dst := filepath.Join(unitDir, filepath.Base(f))
		if target, err := os.Readlink(f); err == nil {
			if err := os.Symlink(target, dst); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeFile(t, dst, readFile(t, f))
	}
	kill, err := exec.LookPath("kill")
	if err != nil {
		t.Fatalf("kill: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "bin/kill"), readFile(t, kill))
	if err := os.Chmod(filepath.Join(root, "bin/kill"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() { // leave the root as the packages made it, for the removal checks
		for _, f := range append(hostUnits, slices...) {
			_ = os.Remove(filepath.Join(unitDir, filepath.Base(f)))
		}
		_ = os.RemoveAll(filepath.Join(root, "bin"))
	}()
	for _, unit := range []string{"edgeloop-exporter.service", "edgeloop-collector.service", "edgeloop-retrain.service"} {
		out, err := command(nil, "systemd-analyze", "verify", "--root="+root, unit)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// checkConfigs runs the installed binaries' --config.check on the installed configurations. The
// exporter's is checked as shipped; the collector's and controller's name token and key files
// under /etc/edgeloop, so they are checked with those paths pointing at files made here.
func checkConfigs(t *testing.T, root, work string) {
	etc := filepath.Join(work, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	hash := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("token-0123456789")))
	writeFile(t, filepath.Join(etc, "nodes.sha256"), []byte("edge-0001 "+hash+"\n"))
	writeFile(t, filepath.Join(etc, "retrain-webhook.sha256"), []byte("alertmanager "+hash+"\n"))
	writeFile(t, filepath.Join(etc, "collector-operator.token"), []byte("token-0123456789\n"))
	edgeloop := filepath.Join(root, "usr/bin/edgeloop")
	run(t, nil, edgeloop, "model", "keygen", "--out", etc)

	out := run(t, nil, filepath.Join(root, "usr/bin/edgeloop-exporter"), "exporter", "--config", filepath.Join(root, "etc/edgeloop/exporter.yaml"), "--config.check")
	t.Logf("exporter.yaml: %s", strings.TrimSpace(out))
	for _, c := range []string{"collector", "retrain"} {
		shipped := readFile(t, filepath.Join(root, "etc/edgeloop", c+".yaml"))
		if !bytes.Contains(shipped, []byte("/etc/edgeloop/")) {
			t.Fatalf("%s.yaml names no file under /etc/edgeloop: the rewrite below checks nothing", c)
		}
		local := filepath.Join(work, c+".yaml")
		writeFile(t, local, bytes.ReplaceAll(shipped, []byte("/etc/edgeloop/"), []byte(etc+"/")))
		out := run(t, nil, edgeloop, c, "--config", local, "--config.check")
		t.Logf("%s.yaml: %s", c, strings.TrimSpace(out))
	}
}

// checkRPMs reads the RPMs back with rpm: every file with its owner and mode, the
// configurations marked %config(noreplace), the scriptlets and the glibc requirement.
func checkRPMs(t *testing.T, dir string) {
	for _, c := range []struct {
		file  string
		files []string
	}{
		{"edgeloop-exporter-1.0.0-1.x86_64.rpm", []string{
			"/etc/edgeloop  root:root drwxr-xr-x",
			"/etc/edgeloop/exporter.yaml cn root:root -rw-r--r--",
			"/usr/bin/edgeloop-exporter  root:root -rwxr-xr-x",
			"/usr/lib/systemd/system/edgeloop-exporter.service  root:root -rw-r--r--",
		}},
		{"edgeloop-1.0.0-1.x86_64.rpm", []string{
			"/etc/edgeloop  root:root drwxr-xr-x",
			"/etc/edgeloop/collector.yaml cn root:root -rw-r--r--",
			"/etc/edgeloop/retrain.yaml cn root:root -rw-r--r--",
			"/usr/bin/edgeloop  root:root -rwxr-xr-x",
			"/usr/lib/systemd/system/edgeloop-collector.service  root:root -rw-r--r--",
			"/usr/lib/systemd/system/edgeloop-retrain.service  root:root -rw-r--r--",
		}},
	} {
		rpmFile := filepath.Join(dir, c.file)
		out := run(t, nil, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms}\n]", rpmFile)
		if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(c.files, "\n") {
			t.Errorf("%s holds:\n%s\nwant:\n%s", c.file, strings.Join(got, "\n"), strings.Join(c.files, "\n"))
		}
		scripts := run(t, nil, "rpm", "-qp", "--scripts", rpmFile)
		for _, want := range []string{"postinstall scriptlet", "useradd", "preuninstall scriptlet", "postuninstall scriptlet"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("%s's scriptlets lack %q", c.file, want)
			}
		}
		if req := run(t, nil, "rpm", "-qpR", rpmFile); !strings.Contains(req, "glibc >= 2.34") {
			t.Errorf("%s requires:\n%s\nwant glibc >= 2.34", c.file, req)
		}
	}
}

// rpmScriptlets runs the maintainer scripts with rpm's arguments (%post 1 and 2, %preun 0,
// %postun 0) in a fresh root: rpm would run them chrooted, which needs a whole system inside;
// the scripts are the same files the .debs ran, under DPKG_ROOT as above.
func rpmScriptlets(t *testing.T, root string) {
	seedRoot(t, root)
	env := []string{"DPKG_ROOT=" + root}
	script := func(name, arg string) { run(t, env, "sh", "./scripts/"+name, arg) }
	script("edgeloop.postinstall", "1")
	script("edgeloop-exporter.postinstall", "1")
	uid, gid := checkUser(t, root)
	spool := filepath.Join(root, "var/lib/edgeloop/spool")
	writeFile(t, filepath.Join(spool, "segment"), []byte("spooled"))
	script("edgeloop-exporter.postinstall", "2") // upgrade
	script("edgeloop-exporter.preremove", "0")
	script("edgeloop-exporter.postremove", "0") // erase keeps the state
	if _, err := os.Stat(filepath.Join(spool, "segment")); err != nil {
		t.Errorf("rpm upgrade and erase: the spool must stay: %v", err)
	}
	for _, d := range []string{"models", "spool", "deadletter", "collector", "retrain"} {
		fi, err := os.Stat(filepath.Join(root, "var/lib/edgeloop", d))
		if err != nil {
			t.Errorf("rpm %%post: %v", err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid || fi.Mode().Perm() != 0o750 {
			t.Errorf("rpm %%post: /var/lib/edgeloop/%s: %v %d:%d, want 0750 %d:%d", d, fi.Mode().Perm(), st.Uid, st.Gid, uid, gid)
		}
	}
	if n := strings.Count("\n"+string(readFile(t, filepath.Join(root, "etc/passwd"))), "\nedgeloop:"); n != 1 {
		t.Errorf("the user was added %d times over two packages' scripts and an upgrade, want once", n)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
