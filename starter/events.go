package starter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/workflows"
)

// releaseEvents streams a release as Server-Sent Events (GET /v1/releases/{id}/events):
// every timeline event ("phase", id = its seq, in order, once), the whole status after each
// change ("status", without the timeline), and finally "outcome" with the final view, after
// which the stream ends. Last-Event-ID (or ?after=) resumes after that seq.
func (s *Server) releaseEvents(c *gin.Context) {
	id, _, err := releaseID(c, PermRead)
	if err != nil {
		writeProblem(c, err)
		return
	}
	last := 0
	if v := c.GetHeader("Last-Event-ID"); v != "" {
		last, _ = strconv.Atoi(v)
	} else if v := c.Query("after"); v != "" {
		if last, err = strconv.Atoi(v); err != nil {
			writeProblem(c, badRequest("after: a sequence number"))
			return
		}
	}
	ctx := c.Request.Context()
	rel, err := s.fetchRelease(ctx, id)
	if err != nil {
		writeProblem(c, err)
		return
	}
	if err := authorize(c, PermRead, rel.Environment); err != nil {
		writeProblem(c, err)
		return
	}
	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()

	var lastStatus []byte
	lastWrite := time.Now()
	send := func(event, evID string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			s.log.Error("encode event", "err", err)
			return false
		}
		var buf bytes.Buffer
		if evID != "" {
			fmt.Fprintf(&buf, "id: %s\n", evID)
		}
		fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", event, b)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		w.Flush()
		lastWrite = time.Now()
		return true
	}
	poll := time.NewTicker(s.cfg.EventPoll)
	defer poll.Stop()
	for {
		if st := rel.Status; st != nil {
			evs := append([]workflows.Event(nil), st.Events...)
			sort.SliceStable(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
			for _, ev := range evs {
				if ev.Seq <= last {
					continue
				}
				if !send(apiclient.EventPhase, strconv.Itoa(ev.Seq), ev) {
					return
				}
				last = ev.Seq
			}
			slim := *st
			slim.Events = nil
			b, _ := json.Marshal(slim)
			if !bytes.Equal(b, lastStatus) {
				if !send(apiclient.EventStatus, "", slim) {
					return
				}
				lastStatus = b
			}
		}
		if !rel.Running {
			send(apiclient.EventOutcome, "", rel)
			return
		}
		for next := false; !next; {
			select {
			case <-ctx.Done():
				return
			case <-poll.C:
				next = true
			}
			if time.Since(lastWrite) >= s.cfg.EventKeepAlive {
				if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
					return
				}
				w.Flush()
				lastWrite = time.Now()
			}
		}
		next, err := s.fetchRelease(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p := problemFor(err)
			if p.Status == http.StatusServiceUnavailable {
				continue // Temporal blinked: keep the stream and ask again
			}
			send(apiclient.EventError, "", p)
			return
		}
		rel = next
	}
}
