package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// MIMECorpus returns the directory of the real-world email corpus (messages from the Ruby
// mail gem's fixtures, MIT licence): shared/corpus/mime-realworld beside the module's
// root, as in CI, where the repository is cloned with shared/ next to it. When it is
// missing the test fails, or, under -short, ok is false so the caller can skip.
func MIMECorpus(tb testing.TB) (dir string, ok bool) {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			tb.Fatalf("no go.mod above %s", wd)
		}
		root = parent
	}
	dir = filepath.Join(filepath.Dir(root), "shared", "corpus", "mime-realworld")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if testing.Short() {
			return "", false
		}
		tb.Fatalf("the MIME corpus is missing: expected the directory %s (shared/corpus/mime-realworld beside the module's root, "+
			"as in a checkout with shared/ next to the repository); run with -short to skip the corpus", dir)
	}
	return dir, true
}
