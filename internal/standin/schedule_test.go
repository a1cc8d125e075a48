package standin

import (
	"fmt"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	clock := newClock()
	s, ts := newTest(t, Options{Now: clock.Now})
	s.SetFault(Fault{Kind: FaultBadGateway})
	err := s.setSchedule(faultSchedule{Phases: []schedulePhase{
		{Name: "limited", Duration: 10 * time.Second, Fault: Fault{Kind: FaultRateLimit, RetryAfter: 1}},
		{Name: "failing", Duration: 5 * time.Second, Fault: Fault{Kind: FaultServerError}},
		{Name: "normal", Duration: 5 * time.Second},
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	steps := []struct {
		at   time.Duration // since the schedule started
		want int
	}{
		{0, 429}, {9 * time.Second, 429}, {10 * time.Second, 500}, {14 * time.Second, 500},
		{15 * time.Second, 200}, {19 * time.Second, 200},
		{20 * time.Second, 502}, // the schedule is over: SetFault's fault again
	}
	for _, st := range steps {
		clock.Add(start.Add(st.at).Sub(clock.Now()))
		if got := tokenStatus(t, ts, testID, testSecret); got != st.want {
			t.Errorf("at %s: status %d, want %d", st.at, got, st.want)
		}
	}
	s.FailNext(1, Fault{Kind: FaultUnavailable})
	if got := tokenStatus(t, ts, testID, testSecret); got != 503 {
		t.Errorf("FailNext after the schedule: status %d, want 503", got)
	}

	rep := s.scheduleReport()
	if rep.Running || len(rep.Phases) != 3 {
		t.Fatalf("report: running %v, %d phase runs; want a finished schedule of 3", rep.Running, len(rep.Phases))
	}
	for i, want := range []struct {
		name  string
		start time.Duration
		count OutcomeCounts
	}{
		{"limited", 0, OutcomeCounts{"429": 2}},
		{"failing", 10 * time.Second, OutcomeCounts{"500": 2}},
		{"normal", 15 * time.Second, OutcomeCounts{"200": 2}},
	} {
		p := rep.Phases[i]
		if p.Name != want.name || p.Cycle != 0 || p.Index != i || !p.Start.Equal(start.Add(want.start)) || fmt.Sprint(p.Clients[testID]) != fmt.Sprint(want.count) {
			t.Errorf("phase run %d = %+v, want %s from %s with %v", i, p, want.name, want.start, want.count)
		}
	}
}

func TestScheduleRepeats(t *testing.T) {
	clock := newClock()
	s, ts := newTest(t, Options{Now: clock.Now})
	if err := s.setSchedule(faultSchedule{Repeat: true, Phases: []schedulePhase{
		{Name: "up", Duration: time.Second},
		{Name: "down", Duration: 2 * time.Second, Fault: Fault{Kind: FaultUnavailable}},
	}}); err != nil {
		t.Fatal(err)
	}
	// Cycles of 3s: up at 0-1s, down at 1-3s, up at 3-4s, ...
	var got []int
	for range 7 {
		got = append(got, tokenStatus(t, ts, testID, testSecret))
		clock.Add(time.Second)
	}
	if want := []int{200, 503, 503, 200, 503, 503, 200}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	rep := s.scheduleReport()
	// The clock is at 7s: the down phase of cycle 2 has just begun.
	if !rep.Running || len(rep.Phases) != 6 || rep.Phases[5].Cycle != 2 || rep.Phases[5].Name != "down" || rep.Phases[4].Clients[testID]["200"] != 1 {
		t.Errorf("report: running %v, %d phase runs, last %+v; want 6 runs, the last the down of cycle 2",
			rep.Running, len(rep.Phases), rep.Phases[len(rep.Phases)-1])
	}
	if err := s.setSchedule(faultSchedule{}); err != nil {
		t.Fatal(err)
	}
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 || s.scheduleReport().Running {
		t.Errorf("after the schedule stopped: status %d, running %v", got, s.scheduleReport().Running)
	}
}

func TestScheduleRevokesCredentials(t *testing.T) {
	clock := newClock()
	other := Credential{ClientID: "client-b", ClientSecret: "secret-b"}
	s, ts := newTest(t, Options{Now: clock.Now, Credentials: []Credential{other}})
	if err := s.setSchedule(faultSchedule{Phases: []schedulePhase{
		{Name: "deleted", Duration: time.Minute, Revoked: []string{testID}},
	}}); err != nil {
		t.Fatal(err)
	}
	if got := tokenStatus(t, ts, testID, testSecret); got != 401 {
		t.Errorf("revoked credential: status %d, want 401", got)
	}
	if got := tokenStatus(t, ts, other.ClientID, other.ClientSecret); got != 200 {
		t.Errorf("another credential: status %d, want 200", got)
	}
	clock.Add(time.Minute)
	if got := tokenStatus(t, ts, testID, testSecret); got != 200 {
		t.Errorf("after the phase: status %d, want 200 (restored)", got)
	}
}

func TestScheduleInvalid(t *testing.T) {
	s := New(Options{})
	for name, sc := range map[string]faultSchedule{
		"zero duration":      {Phases: []schedulePhase{{Name: "x"}}},
		"unknown fault":      {Phases: []schedulePhase{{Name: "x", Duration: time.Second, Fault: Fault{Kind: "meteor"}}}},
		"empty revoked id":   {Phases: []schedulePhase{{Name: "x", Duration: time.Second, Revoked: []string{""}}}},
		"negative duration":  {Phases: []schedulePhase{{Name: "x", Duration: -time.Second}}},
		"second phase wrong": {Phases: []schedulePhase{{Name: "x", Duration: time.Second}, {Name: "y"}}},
	} {
		if err := s.setSchedule(sc); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
