package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// MIMECorpus returns the directory of the real-world email corpus (messages from the Ruby
// mail gem's fixtures, MIT licence): shared/corpus/mime-realworld beside the module's
// root, as in CI, where the repository is cloned with shared/ next to it (any ancestor's
// shared/ will do, and CRMSYNC_CORPUS names it outright). When it is missing the test
// fails, or, under -short, ok is false so the caller can skip.
func MIMECorpus(tb testing.TB) (dir string, ok bool) {
	tb.Helper()
	if d := os.Getenv("CRMSYNC_CORPUS"); d != "" {
		return d, true
	}
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		candidate := filepath.Join(d, "shared", "corpus", "mime-realworld")
		if fi, err := os.Stat(candidate); err == nil && fi.IsDir() {
			return candidate, true
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if testing.Short() {
		return "", false
	}
	tb.Fatalf("the MIME corpus is missing: no shared/corpus/mime-realworld in %s or above it (a checkout has shared/ next to "+
		"the repository; CRMSYNC_CORPUS may name it); run with -short to skip the corpus", wd)
	return "", false
}
