// The tests of package jsclient run the JavaScript client's tests (node --test) from go
// test, so the README's one test command covers them: it builds the latch
// binary, installs the npm dev dependencies from the lockfile if they are
// missing, checks that the committed dist/ is what the sources compile to,
// and runs the Node and browser tests against real `latch serve` processes.
package jsclient_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// node finds node and npm, or skips: a Go-only machine can still run the
// rest of the suite. CI (LATCH_TEST_BROWSER=1) requires them.
func node(t *testing.T) (nodeBin, npmBin string) {
	t.Helper()
	nodeBin, err1 := exec.LookPath("node")
	npmBin, err2 := exec.LookPath("npm")
	if err1 != nil || err2 != nil {
		if os.Getenv("LATCH_TEST_BROWSER") == "1" {
			t.Fatalf("LATCH_TEST_BROWSER=1 but node or npm is missing: %v %v", err1, err2)
		}
		t.Skip("node and npm are not installed; the JavaScript client's tests need Node 20+")
	}
	return nodeBin, npmBin
}

// deps runs `npm ci` when node_modules is missing, so a fresh clone works.
func deps(t *testing.T, npmBin string) {
	t.Helper()
	if _, err := os.Stat("node_modules/.package-lock.json"); err == nil {
		return
	}
	cmd := exec.Command(npmBin, "ci", "--no-audit", "--no-fund")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
}

// TestDistUpToDate compiles src/ into a temporary directory and compares
// it with the committed dist/: pages load dist/index.js directly and the
// account page served by Latch embeds it, so a stale dist is a bug.
func TestDistUpToDate(t *testing.T) {
	nodeBin, npmBin := node(t)
	deps(t, npmBin)
	out := t.TempDir()
	cmd := exec.Command(nodeBin, "node_modules/typescript/bin/tsc", "-p", "tsconfig.json", "--outDir", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, b)
	}
	compare(t, out, "dist")
}

func compare(t *testing.T, fresh, committed string) {
	t.Helper()
	seen := map[string]bool{}
	filepath.WalkDir(fresh, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(fresh, p)
		seen[rel] = true
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(committed, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("dist/%s is stale or missing: run `npm run build` in clients/js and commit dist/", rel)
		}
		return nil
	})
	filepath.WalkDir(committed, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(committed, p)
		if !seen[rel] {
			t.Errorf("dist/%s has no source: delete it", rel)
		}
		return nil
	})
}

// TestNode runs every test file under test/ with node's test runner: the
// client's contract against real latch servers (test/node) and the
// browser tests in headless chromium (test/browser; they skip without
// /usr/bin/chromium unless LATCH_TEST_BROWSER=1).
func TestNode(t *testing.T) {
	nodeBin, npmBin := node(t)
	deps(t, npmBin)
	bin := filepath.Join(t.TempDir(), "latch")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command("go", "build", "-o", bin, "github.com/latchauth/latch/cmd/latch")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build latch: %v\n%s", err, b)
	}
	// A Go resource server behind bearer's middleware, for the outside
	// DPoP client's test (test/node/dpop-oauth4webapi.test.mjs).
	notes := filepath.Join(t.TempDir(), "notes-api")
	if runtime.GOOS == "windows" {
		notes += ".exe"
	}
	build = exec.Command("go", "build", "-o", notes, "github.com/latchauth/latch/examples/notes-api")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build notes-api: %v\n%s", err, b)
	}
	args := []string{"--test", "--test-reporter=spec", "--test-concurrency=4"}
	// Node 20 takes no globs: name the files (test/node, test/browser).
	files, _ := filepath.Glob("test/*/*.test.mjs")
	if len(files) == 0 {
		t.Fatal("no test files under test/")
	}
	args = append(args, files...)
	cmd := exec.Command(nodeBin, args...)
	cmd.Env = append(os.Environ(), "LATCH_BIN="+bin, "NOTES_BIN="+notes)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || testing.Verbose() {
		t.Logf("node --test:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}
