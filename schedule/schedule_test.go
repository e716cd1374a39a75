package schedule_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/schedule"
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func TestFakeTimersFireInDeadlineOrder(t *testing.T) {
	c := schedule.NewFake(t0)
	late := c.NewTimer(3 * time.Minute)
	early := c.NewTimer(1 * time.Minute)
	stopped := c.NewTimer(2 * time.Minute)
	require.Equal(t, 3, c.Pending())
	assert.True(t, stopped.Stop())
	assert.False(t, stopped.Stop(), "second Stop")

	c.Advance(90 * time.Second)
	select {
	case at := <-early.C():
		assert.Equal(t, t0.Add(time.Minute), at, "a timer fires at its deadline, not at the target time")
	default:
		t.Fatal("early timer did not fire")
	}
	select {
	case <-late.C():
		t.Fatal("late timer fired too soon")
	default:
	}
	assert.Equal(t, t0.Add(90*time.Second), c.Now())

	late.Reset(time.Minute) // now due at 2m30s
	when, ok := c.NextDeadline()
	require.True(t, ok)
	assert.Equal(t, t0.Add(150*time.Second), when)
	require.True(t, c.AdvanceToNext())
	assert.Equal(t, t0.Add(150*time.Second), <-late.C())
	assert.False(t, c.AdvanceToNext(), "no timer left")
}

func TestFakeZeroTimerFiresAtOnce(t *testing.T) {
	c := schedule.NewFake(t0)
	tm := c.NewTimer(0)
	assert.Equal(t, t0, <-tm.C())
	assert.Equal(t, 0, c.Pending())
}

func TestFakeSetNeverGoesBack(t *testing.T) {
	c := schedule.NewFake(t0)
	c.Set(t0.Add(-time.Hour))
	assert.Equal(t, t0, c.Now())
}

func TestSleepAndBlockUntil(t *testing.T) {
	c := schedule.NewFake(t0)
	done := make(chan error, 1)
	go func() { done <- schedule.Sleep(context.Background(), c, 5*time.Minute) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.BlockUntil(ctx, 1))
	c.Advance(5 * time.Minute)
	require.NoError(t, <-done)

	// A canceled context ends the sleep without the clock moving.
	sctx, scancel := context.WithCancel(context.Background())
	go func() { done <- schedule.Sleep(sctx, c, time.Hour) }()
	require.NoError(t, c.BlockUntil(ctx, 1))
	scancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

func TestDefaultCadence(t *testing.T) {
	p := schedule.DefaultPolicy()
	for _, tc := range []struct {
		name string
		w    crmsync.Workload
		info schedule.RunInfo
		want time.Duration
	}{
		{"incoming waits 5 minutes", crmsync.Incoming, schedule.RunInfo{}, 5 * time.Minute},
		{"outgoing scans every 5 minutes", crmsync.Outgoing, schedule.RunInfo{}, 5 * time.Minute},
		{"idle ACT waits 12 minutes", crmsync.ACT, schedule.RunInfo{Load: 0}, 12 * time.Minute},
		{"busy ACT waits 5 minutes", crmsync.ACT, schedule.RunInfo{Load: 50}, 5 * time.Minute},
		{"very busy ACT still waits 5 minutes", crmsync.ACT, schedule.RunInfo{Load: 5000}, 5 * time.Minute},
		{"half-busy ACT waits 8.5 minutes", crmsync.ACT, schedule.RunInfo{Load: 25}, 8*time.Minute + 30*time.Second},
		{"idle ACT with incoming waits 15 minutes", crmsync.ACT, schedule.RunInfo{AlsoIncoming: true}, 15 * time.Minute},
		{"busy ACT with incoming waits 5 minutes", crmsync.ACT, schedule.RunInfo{AlsoIncoming: true, Load: 80}, 5 * time.Minute},
		{"profile minimum polling interval wins", crmsync.Incoming, schedule.RunInfo{MinInterval: 20 * time.Minute}, 20 * time.Minute},
		{"shorter minimum polling interval changes nothing", crmsync.Outgoing, schedule.RunInfo{MinInterval: time.Minute}, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, p.Interval(tc.w, tc.info))
		})
	}
}

// The next run is computed at the end of a cycle: on a fake clock, a cycle that lasts
// 3 minutes delays the next one by 3 minutes.
func TestNextRunCountsFromCycleEnd(t *testing.T) {
	c := schedule.NewFake(t0)
	p := schedule.DefaultPolicy()
	start := c.Now()
	c.Advance(3 * time.Minute) // a long cycle
	next := p.Next(crmsync.Incoming, c.Now(), schedule.RunInfo{})
	assert.Equal(t, start.Add(8*time.Minute), next)

	// And a timer for the next run fires exactly then.
	tm := c.NewTimer(next.Sub(c.Now()))
	c.Advance(5*time.Minute - time.Nanosecond)
	select {
	case <-tm.C():
		t.Fatal("fired before the next run")
	default:
	}
	c.Advance(time.Nanosecond)
	assert.Equal(t, next, <-tm.C())
}

func TestACTLoadMovesTheInterval(t *testing.T) {
	p := schedule.DefaultPolicy()
	load := 0.0
	var got []time.Duration
	for _, items := range []int{0, 100, 100, 100, 0, 0, 0, 0} {
		load = schedule.UpdateLoad(load, items)
		got = append(got, p.Interval(crmsync.ACT, schedule.RunInfo{Load: load}))
	}
	assert.Equal(t, 12*time.Minute, got[0], "idle")
	assert.Equal(t, 5*time.Minute, got[1], "busy after a big cycle")
	assert.Equal(t, 5*time.Minute, got[3])
	for i := 4; i < len(got); i++ {
		assert.Greater(t, got[i], got[i-1], "waits grow back as cycles carry nothing (step %d)", i)
	}
	assert.LessOrEqual(t, got[len(got)-1], 12*time.Minute)
}

// The product's retries: up to 10, five minutes apart (jitter only lengthens), then the
// error is permanent.
func TestDefaultRetries(t *testing.T) {
	c := schedule.NewFake(t0)
	p := schedule.DefaultPolicy()
	for attempt := 1; attempt <= 10; attempt++ {
		for _, u := range []float64{0, 0.5, 0.999} {
			next, giveUp := p.Retry(c.Now(), attempt, 0, u)
			require.False(t, giveUp, "attempt %d", attempt)
			d := next.Sub(c.Now())
			assert.GreaterOrEqual(t, d, 5*time.Minute, "attempt %d never sooner than 5 minutes", attempt)
			assert.LessOrEqual(t, d, 5*time.Minute+30*time.Second, "attempt %d jitter at most 10%%", attempt)
		}
		c.Advance(5 * time.Minute)
	}
	_, giveUp := p.Retry(c.Now(), 11, 0, 0)
	assert.True(t, giveUp, "the 11th failure is not retried")
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	p := schedule.DefaultPolicy()
	next, giveUp := p.Retry(t0, 1, 42*time.Minute, 0.9)
	require.False(t, giveUp)
	assert.Equal(t, t0.Add(42*time.Minute), next, "a Retry-After longer than the backoff wins")
	next, _ = p.Retry(t0, 1, time.Second, 0)
	assert.Equal(t, t0.Add(5*time.Minute), next, "a short Retry-After does not shorten the backoff")
}

func TestExponentialBackoffWithJitter(t *testing.T) {
	b := schedule.Backoff{Base: time.Minute, Factor: 2, Max: 10 * time.Minute, Jitter: 0.2}
	for i, want := range []time.Duration{1, 2, 4, 8, 10, 10} {
		want *= time.Minute
		assert.Equal(t, want, b.Delay(i+1, 0), "attempt %d without jitter", i+1)
		d := b.Delay(i+1, 0.999)
		assert.Greater(t, d, want, "jitter lengthens attempt %d", i+1)
		assert.LessOrEqual(t, d, want+want/5, "jitter is at most 20%% on attempt %d", i+1)
	}
	none := schedule.Backoff{Base: time.Minute, Max: time.Minute, Jitter: -1}
	assert.Equal(t, time.Minute, none.Delay(3, 0.99), "negative jitter turns it off")
	assert.Equal(t, time.Minute, b.Delay(0, 0), "attempt 0 counts as the first")
	assert.Equal(t, 10*time.Minute, b.Delay(500, 0), "huge attempts stay capped")
}

func TestPolicyValidate(t *testing.T) {
	require.NoError(t, schedule.DefaultPolicy().Validate())
	require.NoError(t, schedule.Policy{}.Validate(), "the zero policy is the default")
	for _, tc := range []struct {
		name string
		p    schedule.Policy
		want string
	}{
		{"negative interval", schedule.Policy{Incoming: -time.Second}, "Incoming"},
		{"ACT bounds crossed", schedule.Policy{ACTMin: 20 * time.Minute}, "ACTMin"},
		{"factor below one", schedule.Policy{Backoff: schedule.Backoff{Factor: 0.5}}, "Factor"},
		{"max below base", schedule.Policy{Backoff: schedule.Backoff{Base: time.Hour}}, "Backoff.Max"},
		{"jitter above one", schedule.Policy{Backoff: schedule.Backoff{Jitter: 2}}, "Jitter"},
		{"negative retries", schedule.Policy{MaxRetries: -1}, "MaxRetries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func ExamplePolicy_Retry() {
	p := schedule.DefaultPolicy()
	end := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	next, giveUp := p.Retry(end, 1, 0, 0)
	fmt.Println(next.Format("15:04"), giveUp)
	_, giveUp = p.Retry(end, p.MaxRetries+1, 0, 0)
	fmt.Println(giveUp)
	// Output:
	// 09:05 false
	// true
}
