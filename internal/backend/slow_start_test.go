package backend

import (
	"sync"
	"testing"
	"time"
)

func TestRampOverTime(t *testing.T) {
	const window = 10 * time.Second
	b := New("p", "a", 1)
	b.SetSlowStart(window)
	if b.SlowStart() != window {
		t.Fatalf("SlowStart() = %v, want %v", b.SlowStart(), window)
	}
	b.StartRampAt(t0)
	steps := []struct {
		at   time.Duration // since the start of the ramp
		want int32
	}{
		{-time.Second, RampFloor}, // a clock that went back: still the floor
		{0, RampFloor},
		{window / 4, 325},
		{window / 2, 550},
		{window * 9 / 10, 910},
		{window - time.Millisecond, 999},
		{window / 2, 550}, // reading is not a one-way ratchet before the end
		{window, RampFull},
		{window / 2, RampFull}, // once over, over for good
	}
	for _, s := range steps {
		if got := b.RampAt(t0.Add(s.at)); got != s.want {
			t.Errorf("RampAt(start%+v) = %d, want %d", s.at, got, s.want)
		}
	}
	if b.Ramping() {
		t.Error("still Ramping() after the end of the window was read")
	}
	if got := b.Ramp(); got != RampFull {
		t.Errorf("Ramp() after the ramp = %d, want %d", got, RampFull)
	}
}

// The share rises monotonically over the whole window and stays in bounds.
func TestRampMonotonic(t *testing.T) {
	b := New("p", "a", 1)
	b.SetSlowStart(30 * time.Second)
	b.StartRampAt(t0)
	prev := int32(0)
	for at := time.Duration(0); at < 30*time.Second; at += 7 * time.Millisecond {
		got := b.RampAt(t0.Add(at))
		if got < prev || got < RampFloor || got >= RampFull {
			t.Fatalf("RampAt(start+%v) = %d after %d: want rising within [%d, %d)", at, got, prev, RampFloor, RampFull)
		}
		prev = got
	}
}

func TestNotRamping(t *testing.T) {
	b := New("p", "a", 1)
	if b.Ramping() || b.Ramp() != RampFull || b.RampAt(t0) != RampFull {
		t.Errorf("new backend: Ramping %v, Ramp %d, RampAt %d; want false, %d, %d",
			b.Ramping(), b.Ramp(), b.RampAt(t0), RampFull, RampFull)
	}
}

// A change of state to up, by either setter, starts a ramp when slow start
// is on; nothing else does.
func TestRampStartsWhenComingUp(t *testing.T) {
	tests := []struct {
		name     string
		from     State
		change   func(b *Backend, from State)
		slow     time.Duration
		wantRamp bool
	}{
		{"SetState down→up", StateDown, setUp, time.Hour, true},
		{"SetState ejected→up", StateEjected, setUp, time.Hour, true},
		{"SetState draining→up", StateDraining, setUp, time.Hour, true},
		{"SetState starting→up", StateStarting, setUp, time.Hour, true},
		{"CompareAndSwapState down→up", StateDown, casUp, time.Hour, true},
		{"CompareAndSwapState ejected→up", StateEjected, casUp, time.Hour, true},
		{"SetState up→up", StateUp, setUp, time.Hour, false},
		{"CompareAndSwapState up→up", StateUp, casUp, time.Hour, false},
		{"SetState up→down", StateUp, func(b *Backend, _ State) { b.SetState(StateDown) }, time.Hour, false},
		{"failed CompareAndSwapState", StateDraining, func(b *Backend, _ State) {
			b.CompareAndSwapState(StateDown, StateUp) // a drain won the race
		}, time.Hour, false},
		{"slow start off", StateDown, setUp, 0, false},
		{"slow start off, CompareAndSwapState", StateDown, casUp, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New("p", "a", 1)
			b.SetState(tt.from) // before slow start is on: no ramp from this
			b.SetSlowStart(tt.slow)
			tt.change(b, tt.from)
			if b.Ramping() != tt.wantRamp {
				t.Fatalf("Ramping() = %v, want %v", b.Ramping(), tt.wantRamp)
			}
			// An hour-long ramp that has just started is at its floor.
			want := int32(RampFull)
			if tt.wantRamp {
				want = RampFloor
			}
			if got := b.Ramp(); got != want {
				t.Errorf("Ramp() = %d, want %d", got, want)
			}
			if tt.wantRamp {
				if got := b.RampAt(time.Now().Add(tt.slow)); got != RampFull {
					t.Errorf("RampAt(now+slow_start) = %d, want %d", got, RampFull)
				}
			}
		})
	}
}

func setUp(b *Backend, _ State)    { b.SetState(StateUp) }
func casUp(b *Backend, from State) { b.CompareAndSwapState(from, StateUp) }

func TestSlowStartOff(t *testing.T) {
	b := New("p", "a", 1)
	b.StartRamp()
	b.StartRampAt(t0)
	if b.Ramping() {
		t.Fatal("StartRamp started a ramp with slow start off")
	}
	// Turning slow start off ends a ramp in progress at once.
	b.SetSlowStart(time.Minute)
	b.StartRampAt(t0)
	if got := b.RampAt(t0.Add(30 * time.Second)); got != 550 {
		t.Fatalf("mid-ramp RampAt = %d, want 550", got)
	}
	b.SetSlowStart(0)
	if b.Ramping() || b.RampAt(t0.Add(30*time.Second)) != RampFull || b.SlowStart() != 0 {
		t.Errorf("after SetSlowStart(0): Ramping %v, RampAt %d, SlowStart %v; want false, %d, 0",
			b.Ramping(), b.RampAt(t0.Add(30*time.Second)), b.SlowStart(), RampFull)
	}
	b.SetSlowStart(-time.Second)
	if b.SlowStart() != 0 {
		t.Errorf("SetSlowStart(-1s): SlowStart() = %v, want 0", b.SlowStart())
	}
}

// A new ramp replaces one in progress.
func TestRampRestarts(t *testing.T) {
	b := New("p", "a", 1)
	b.SetSlowStart(10 * time.Second)
	b.StartRampAt(t0)
	b.StartRampAt(t0.Add(8 * time.Second))
	if got := b.RampAt(t0.Add(13 * time.Second)); got != 550 {
		t.Errorf("5s into the second ramp: RampAt = %d, want 550", got)
	}
}

// Readers racing with ramps being started and ended only ever see a share
// within bounds (run with -race).
func TestRampConcurrent(t *testing.T) {
	b := New("p", "a", 1)
	b.SetSlowStart(time.Second)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b.StartRampAt(t0.Add(time.Duration(i%3) * time.Second))
		}
	})
	for g := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				at := t0.Add(time.Duration(i%4000+g) * time.Millisecond)
				if got := b.RampAt(at); got < RampFloor || got > RampFull {
					t.Errorf("RampAt = %d, outside [%d, %d]", got, RampFloor, RampFull)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
}
