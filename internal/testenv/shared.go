package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// server is a kind of server tests ask for (the mail servers, PostgreSQL): the one an
// env file names (a run that started it beforehand, as scripts/test.sh does), the one
// the tests of a binary whose TestMain is RunMain share (started on first use, stopped
// by RunMain), or one per test (stopped when the test ends).
type server[T any] struct {
	what   string                       // for -short's skip: "real mail servers"
	envVar string                       // the variable naming an env file
	load   func(path string) (T, error) // reads the env file
	start  func() (T, error)            // starts one
	stop   func(T) error                // stops one this process started

	mu     sync.Mutex
	inMain bool // RunMain runs the tests and will stop what was started

	// The instance envVar names, read once per value of the variable.
	envPath string
	envVal  T
	envErr  error

	// The instance RunMain's tests share: started on first use (every later caller
	// fails with the error if it could not be).
	val     T
	started bool
	err     error
}

// get returns the instance for t, as server describes. It skips t under -short and
// fails it when the server cannot be had.
func (s *server[T]) get(t testing.TB) T {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s; run without -short", s.what)
	}
	s.mu.Lock()
	if path := os.Getenv(s.envVar); path != "" {
		defer s.mu.Unlock()
		if s.envPath != path {
			s.envPath = path
			s.envVal, s.envErr = s.load(path)
			if s.envErr != nil {
				s.envErr = fmt.Errorf("%s=%s: %w", s.envVar, path, s.envErr)
			}
		}
		if s.envErr != nil {
			t.Fatalf("testenv: %v", s.envErr)
		}
		return s.envVal
	}
	if s.inMain {
		defer s.mu.Unlock()
		if !s.started && s.err == nil {
			s.val, s.err = s.start()
			s.started = s.err == nil
		}
		if s.err != nil {
			t.Fatalf("testenv: %v", s.err)
		}
		return s.val
	}
	s.mu.Unlock()

	// No RunMain: an instance for this test alone.
	v, err := s.start()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(v); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return v
}

// setInMain says whether RunMain runs the tests, and returns what it was.
func (s *server[T]) setInMain(on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.inMain
	s.inMain = on
	return was
}

// stopShared stops the instance RunMain's tests shared, if one was started.
func (s *server[T]) stopShared() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	var zero T
	err := s.stop(s.val)
	s.val, s.started = zero, false
	return err
}
