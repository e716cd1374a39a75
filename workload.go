package crmsync

import (
	"fmt"
	"time"
)

// Workload is one kind of synchronization a mailbox runs on its own schedule.
type Workload uint8

// The workloads. The zero value is not a workload.
const (
	Incoming Workload = iota + 1 // incoming email: mailbox → CRM
	Outgoing                     // outgoing email: CRM Pending Send → mailbox
	ACT                          // appointments, contacts and tasks, both ways
)

// NumWorkloads is the number of workloads; Workload values run from 1 to NumWorkloads.
const NumWorkloads = 3

// AllWorkloads returns the workloads in their fixed order.
func AllWorkloads() [NumWorkloads]Workload { return [NumWorkloads]Workload{Incoming, Outgoing, ACT} }

// Valid reports whether w is one of the defined workloads.
func (w Workload) Valid() bool { return w >= Incoming && w <= ACT }

// String returns "incoming", "outgoing" or "act".
func (w Workload) String() string {
	switch w {
	case Incoming:
		return "incoming"
	case Outgoing:
		return "outgoing"
	case ACT:
		return "act"
	}
	return fmt.Sprintf("workload(%d)", uint8(w))
}

// DeliveryMethod says how a mailbox delivers one workload.
type DeliveryMethod uint8

// Delivery methods. The zero value, DeliveryNone, means the workload does not run.
const (
	DeliveryNone           DeliveryMethod = iota // the workload does not run for this mailbox
	DeliveryServerSideSync                       // the engine runs the workload
)

// SyncStatus is the outcome of a workload's last cycle, with the product's codes.
type SyncStatus uint8

// Workload statuses.
const (
	StatusNotRun  SyncStatus = 0 // never ran
	StatusSuccess SyncStatus = 1 // the last cycle succeeded
	StatusFailure SyncStatus = 2 // the last cycle failed; see WorkloadState.LastError
)

// String returns "not run", "success" or "failure".
func (s SyncStatus) String() string {
	switch s {
	case StatusNotRun:
		return "not run"
	case StatusSuccess:
		return "success"
	case StatusFailure:
		return "failure"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// TestStatus is the result of Test & Enable for one workload.
type TestStatus uint8

// Test statuses. A workload runs only when its test status is TestPassed.
const (
	TestNotRun TestStatus = iota // never tested, or reset by a change that needs a new test
	TestPassed                   // the probe succeeded; the workload may run
	TestFailed                   // the probe failed, or a permanent error disabled the workload
)

// String returns "not run", "passed" or "failed".
func (s TestStatus) String() string {
	switch s {
	case TestNotRun:
		return "not run"
	case TestPassed:
		return "passed"
	case TestFailed:
		return "failed"
	}
	return fmt.Sprintf("test(%d)", uint8(s))
}

// WorkloadState is what a mailbox records about one workload: how it is delivered,
// whether Test & Enable passed, and how the last cycle went.
type WorkloadState struct {
	Method DeliveryMethod

	// Test is the result of the last Test & Enable, or TestFailed after a permanent
	// error disabled the workload. TestedAt is when it was set, TestError why it failed.
	Test      TestStatus
	TestedAt  time.Time
	TestError string

	// Status is the outcome of the last cycle; StatusAt its time; LastError the error
	// of the last failed cycle (kept after a later success for the record).
	Status    SyncStatus
	StatusAt  time.Time
	LastError string
	// LastErrorKind is the Kind of LastError.
	LastErrorKind Kind
}

// Runnable reports whether the engine may run this workload: it is delivered by
// server-side synchronization and its Test & Enable passed.
func (s WorkloadState) Runnable() bool {
	return s.Method == DeliveryServerSideSync && s.Test == TestPassed
}
