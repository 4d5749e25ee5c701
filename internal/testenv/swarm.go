package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// offlineImageEnv makes a swarm node use the image it has instead of asking a registry first
// (dockerd reads it from its environment; Moby's own integration daemons set it too). Without
// it every task start tries a pull, which cannot succeed on a machine without a registry.
const offlineImageEnv = "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"

// envMu serialises the short window in which offlineImageEnv is set in this process's
// environment for a dockerd to inherit.
var envMu sync.Mutex

// SwarmDaemon starts a second Docker daemon of its own (never the one SecondDaemon shares,
// never the default engine) with the demo images loaded, and makes it a single-node swarm
// manager; it returns the daemon's DOCKER_HOST-style address (unix://...). Swarm state
// therefore never reaches the default engine or other tests.
//
// The swarm listens and advertises on 127.0.0.1 at a free port, with a data-path port of its
// own (the gossip port, 7946, cannot be moved: overlay networks are not for this swarm; use
// the default bridge and --endpoint-mode dnsrr, as the kernel has no IPVS anyway). Its
// docker_gwbridge is created beforehand with a bridge name of the daemon's slot
// (br-slpgw<N>), so it clashes with no other engine and the slot cleanup of a killed test
// process removes it. The daemon runs with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1, so tasks
// start from the loaded images without trying a registry.
//
// t's cleanup removes every service, leaves the swarm, stops the daemon (its containers,
// networks, bridges and directories go with it). It skips t (fails it in CI) where a second
// daemon cannot run, like SecondDaemon, and skips t when the swarm cannot start.
func SwarmDaemon(t testing.TB) string {
	t.Helper()
	integration(t, "a second Docker daemon")
	if os.Geteuid() != 0 {
		unavailable(t, "a second dockerd needs root")
	}
	for _, tool := range []string{"dockerd", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "no "+tool+" on PATH: cannot start a second Docker daemon")
		}
	}
	DemoImages(t)

	d, err := startOfflineDaemon()
	if err != nil {
		t.Fatalf("testenv: second Docker daemon for a swarm: %v", err)
	}
	t.Cleanup(func() {
		if err := d.leaveSwarm(); err != nil {
			t.Errorf("testenv: leaving the swarm: %v", err)
		}
		if err := d.stop(); err != nil {
			t.Errorf("testenv: stopping the swarm's Docker daemon: %v", err)
		}
	})
	if err := d.initSwarm(); err != nil {
		t.Skipf("testenv: a swarm cannot start on a second Docker daemon here: %v", err)
	}
	return d.host
}

// startOfflineDaemon starts a daemon (startDaemon) that inherits offlineImageEnv=1.
func startOfflineDaemon() (*daemon, error) {
	envMu.Lock()
	defer envMu.Unlock()
	old, had := os.LookupEnv(offlineImageEnv)
	if err := os.Setenv(offlineImageEnv, "1"); err != nil {
		return nil, err
	}
	defer func() {
		if had {
			_ = os.Setenv(offlineImageEnv, old)
		} else {
			_ = os.Unsetenv(offlineImageEnv)
		}
	}()
	return startDaemon()
}

// initSwarm creates the daemon's docker_gwbridge and runs docker swarm init.
func (d *daemon) initSwarm() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Swarm creates docker_gwbridge with the Linux bridge name "docker_gwbridge", which
	// every engine of the machine would share; a network of that name made beforehand is
	// used instead (documented way to customise it).
	if _, err := docker(ctx, d.host, nil, "network", "create", "--driver", "bridge",
		"--opt", "com.docker.network.bridge.name="+d.gwBridge(),
		"--opt", "com.docker.network.bridge.enable_icc=false",
		"--opt", "com.docker.network.bridge.enable_ip_masquerade=false",
		"docker_gwbridge"); err != nil {
		return err
	}
	listen, err := freePort("tcp")
	if err != nil {
		return err
	}
	dataPath, err := freePort("udp")
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(listen))
	// Overlay subnets (the ingress network) from the top of the slot's own pool, away from
	// the local networks the daemon allocates from its bottom.
	pool := fmt.Sprintf("10.%d.240.0/20", 200+d.idx)
	_, err = docker(ctx, d.host, nil, "swarm", "init",
		"--listen-addr", addr, "--advertise-addr", addr,
		"--data-path-port", strconv.Itoa(dataPath),
		"--default-addr-pool", pool, "--default-addr-pool-mask-length", "24")
	return err
}

// gwBridge is the Linux bridge name of the daemon's docker_gwbridge: "br-" like the user
// networks, so cleanupSlot finds it by its address in the slot's pool.
func (d *daemon) gwBridge() string { return fmt.Sprintf("br-slpgw%d", d.idx) }

// leaveSwarm removes every service and leaves the swarm (a no-op when not in one).
func (d *daemon) leaveSwarm() error {
	select {
	case <-d.exited:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	state, err := docker(ctx, d.host, nil, "info", "--format", "{{.Swarm.LocalNodeState}}")
	if err != nil {
		return err
	}
	if strings.TrimSpace(state) == "inactive" {
		return nil
	}
	var errs []error
	if out, err := docker(ctx, d.host, nil, "service", "ls", "-q"); err != nil {
		errs = append(errs, err)
	} else if ids := strings.Fields(out); len(ids) > 0 {
		if _, err := docker(ctx, d.host, nil, append([]string{"service", "rm"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := docker(ctx, d.host, nil, "swarm", "leave", "--force"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// freePort returns a port that is free for network right now: "tcp" on 127.0.0.1, "udp" on
// every address; in 20000–49151 (Docker refuses data-path ports above 49151).
func freePort(network string) (int, error) {
	for range 100 {
		n, err := rand.Int(rand.Reader, big.NewInt(49151-20000+1))
		if err != nil {
			return 0, err
		}
		port := 20000 + int(n.Int64())
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if network == "udp" {
			// the VXLAN socket binds every address
			c, err := net.ListenPacket("udp", ":"+strconv.Itoa(port))
			if err == nil {
				_ = c.Close() // only probing for a free port
				return port, nil
			}
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close() // only probing for a free port
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free %s port on 127.0.0.1 in 20000-49151", network)
}
