package devserver

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortBelowTheEphemeralRange: the ports the embedded server's services get are
// outside the range outgoing connections take their local ports from (CI lost a whole test
// binary when one took the worker service's port between the pick and the bind), and can
// be bound.
func TestFreePortBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 20 {
		p, err := freePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p < 10000 || p >= low {
			t.Fatalf("port %d is not in [10000, %d)", p, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d cannot be bound: %v", p, err)
		}
		_ = l.Close()
		seen[p] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 picks gave only %d distinct ports: not random enough to keep processes apart", len(seen))
	}
}
