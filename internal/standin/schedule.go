package standin

import (
	"fmt"
	"slices"
	"time"
)

// schedulePhase is one step of a faultSchedule: while it runs, every token
// request gets Fault (unless FailNext armed one), and the credentials whose
// client ids are in Revoked are treated as deleted: their requests get 401
// invalid_client, as for an unknown client id.
type schedulePhase struct {
	Name     string
	Duration time.Duration
	Fault    Fault
	Revoked  []string
}

// faultSchedule is a sequence of phases that starts when it is set.
// Without Repeat the server goes back to normal (or to the fault set by
// SetFault) after the last phase; with Repeat it starts over, each pass a
// new cycle.
type faultSchedule struct {
	Phases []schedulePhase
	Repeat bool
}

// runningSchedule is a faultSchedule with its start, and the counters of each
// phase it ran.
type runningSchedule struct {
	faultSchedule
	start time.Time
	cycle time.Duration // sum of the phase durations
	// counts holds the requests of each phase run, by client id.
	counts map[phaseRun]map[string]*outcomes
}

// phaseRun names one run of a phase: its index in the schedule, in a cycle.
type phaseRun struct {
	cycle, index int
}

// validate reports what is wrong with sc, if anything.
func (sc faultSchedule) validate() error {
	for i, p := range sc.Phases {
		switch {
		case p.Duration <= 0:
			return fmt.Errorf("phase %d (%q): the duration must be positive", i, p.Name)
		case !p.Fault.Kind.valid():
			return fmt.Errorf("phase %d (%q): unknown fault kind %q", i, p.Name, p.Fault.Kind)
		case slices.Contains(p.Revoked, ""):
			return fmt.Errorf("phase %d (%q): an empty client id in revoke", i, p.Name)
		}
	}
	return nil
}

// setSchedule starts sc now, replacing any schedule that runs and its
// counters; a schedule without phases stops the one that runs.
func (s *Server) setSchedule(sc faultSchedule) error {
	if err := sc.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(sc.Phases) == 0 {
		s.sched = nil
		return nil
	}
	rs := &runningSchedule{faultSchedule: sc, start: s.now(), counts: make(map[phaseRun]map[string]*outcomes)}
	rs.Phases = slices.Clone(sc.Phases)
	for i, p := range rs.Phases {
		rs.Phases[i].Revoked = slices.Clone(p.Revoked)
		rs.cycle += p.Duration
	}
	s.sched = rs
	return nil
}

// at returns the phase run at t; ok is false before the schedule starts
// and after it ends.
func (rs *runningSchedule) at(t time.Time) (run phaseRun, ok bool) {
	elapsed := t.Sub(rs.start)
	if elapsed < 0 || !rs.Repeat && elapsed >= rs.cycle {
		return phaseRun{}, false
	}
	run.cycle = int(elapsed / rs.cycle)
	elapsed -= time.Duration(run.cycle) * rs.cycle
	for i, p := range rs.Phases {
		if elapsed < p.Duration {
			run.index = i
			return run, true
		}
		elapsed -= p.Duration
	}
	// Unreachable: elapsed is below the length of a cycle.
	return phaseRun{}, false
}

// scheduledRun is the phase run a request arrived in, of the schedule that
// ran then.
type scheduledRun struct {
	sched *runningSchedule
	run   phaseRun
}

// phaseAt returns what the schedule says for a request arriving at t: the
// phase run (nil when no schedule runs then), its fault and whether
// clientID is revoked in it.
func (s *Server) phaseAt(t time.Time, clientID string) (sr *scheduledRun, f Fault, revoked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sched == nil {
		return nil, Fault{}, false
	}
	r, ok := s.sched.at(t)
	if !ok {
		return nil, Fault{}, false
	}
	p := s.sched.Phases[r.index]
	return &scheduledRun{s.sched, r}, p.Fault, clientID != "" && slices.Contains(p.Revoked, clientID)
}

// countInPhase records the outcome of a request of clientID in the phase
// run it arrived in, unless its schedule has been replaced since.
func (s *Server) countInPhase(sr *scheduledRun, clientID, outcome string) {
	if sr == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sched != sr.sched {
		return
	}
	byClient := s.sched.counts[sr.run]
	if byClient == nil {
		byClient = make(map[string]*outcomes)
		s.sched.counts[sr.run] = byClient
	}
	o := byClient[clientID]
	if o == nil {
		o = newOutcomes()
		byClient[clientID] = o
	}
	o.add(outcome)
}

// PhaseReport is one phase run of the schedule, as GET /_standin/schedule
// reports it.
type PhaseReport struct {
	Cycle int       `json:"cycle"`
	Index int       `json:"index"`
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Clients holds the token requests of the run by client id ("" for
	// requests without one).
	Clients map[string]OutcomeCounts `json:"clients"`
}

// Requests returns how many token requests clientID sent in the run.
func (p PhaseReport) Requests(clientID string) int64 {
	var n int64
	for _, c := range p.Clients[clientID] {
		n += c
	}
	return n
}

// ScheduleReport is the body of GET /_standin/schedule.
type ScheduleReport struct {
	Running bool      `json:"running"`
	Start   time.Time `json:"start,omitzero"`
	Repeat  bool      `json:"repeat"`
	// Phases lists every phase run that has begun, in order.
	Phases []PhaseReport `json:"phases"`
}

// scheduleReport returns the running schedule's phase runs so far and
// their counters.
func (s *Server) scheduleReport() ScheduleReport {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.sched
	if rs == nil {
		return ScheduleReport{Phases: []PhaseReport{}}
	}
	rep := ScheduleReport{Running: true, Start: rs.start, Repeat: rs.Repeat, Phases: []PhaseReport{}}
	start := rs.start
	for cycle := 0; ; cycle++ {
		for i, p := range rs.Phases {
			if start.After(now) || !rs.Repeat && cycle > 0 {
				rep.Running = rs.Repeat || now.Before(rs.start.Add(rs.cycle))
				return rep
			}
			pr := PhaseReport{Cycle: cycle, Index: i, Name: p.Name, Start: start, End: start.Add(p.Duration), Clients: map[string]OutcomeCounts{}}
			for id, o := range rs.counts[phaseRun{cycle, i}] {
				pr.Clients[id] = o.counts()
			}
			rep.Phases = append(rep.Phases, pr)
			start = pr.End
		}
	}
}
