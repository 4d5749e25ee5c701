package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestFollowResumesAfterADroppedStream: the first connection drops after two events; the
// client reconnects with Last-Event-ID and gets the rest, each event once, then the outcome.
func TestFollowResumesAfterADroppedStream(t *testing.T) {
	var conns atomic.Int32
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			fmt.Fprint(w, `{"title":"Unauthorized","status":401}`)
			return
		}
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		if conns.Add(1) == 1 {
			fmt.Fprint(w, ": keep-alive\n\nid: 1\nevent: phase\ndata: {\"seq\":1,\"phase\":\"pending\",\"message\":\"a\"}\n\n")
			fmt.Fprint(w, "id: 2\nevent: phase\ndata: {\"seq\":2,\"phase\":\"canary\",\"message\":\"b\"}\n\n")
			f.Flush()
			return // the connection drops before the outcome
		}
		fmt.Fprint(w, "id: 3\nevent: phase\ndata: {\"seq\":3,\"phase\":\"done\",\n")
		fmt.Fprint(w, "data: \"message\":\"c\"}\n\n")
		fmt.Fprint(w, "event: status\ndata: {\"id\":\"x\",\"phase\":\"done\",\"outcome\":\"succeeded\",\"services\":null,\"triggered_by\":\"t\",\"started_at\":\"2026-01-01T00:00:00Z\"}\n\n")
		fmt.Fprint(w, "event: outcome\ndata: {\"id\":\"release-e-x\",\"environment\":\"e\",\"running\":false,\"phase\":\"done\",\"outcome\":\"succeeded\",\"links\":{\"self\":\"/\",\"events\":\"/\"}}\n\n")
		f.Flush()
	}))
	defer srv.Close()
	c := New(srv.URL, "tok")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var seqs []int
	var outcome *Release
	var statuses int
	err := c.Follow(ctx, "release-e-x", 0, func(ev StreamEvent) error {
		switch ev.Type {
		case EventPhase:
			seqs = append(seqs, ev.Event.Seq)
		case EventStatus:
			statuses++
		case EventOutcome:
			outcome = ev.Release
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[1 2 3]" || statuses != 1 || outcome == nil || outcome.Outcome != "succeeded" {
		t.Fatalf("seqs %v, statuses %d, outcome %+v", seqs, statuses, outcome)
	}
	if fmt.Sprint(lastIDs) != "[ 2]" {
		t.Fatalf("Last-Event-ID per connection: %q", lastIDs)
	}

	// A 401 is not retried: it comes back as a Problem.
	err = New(srv.URL, "wrong").Follow(ctx, "release-e-x", 0, func(StreamEvent) error { return nil })
	var p *Problem
	if !errors.As(err, &p) || p.Status != 401 {
		t.Fatalf("follow with a wrong token: %v", err)
	}
}
