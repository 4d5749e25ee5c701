package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/starter"
)

// tokensFileEnv names the API tokens file when --tokens-file is not given.
const tokensFileEnv = "SLIPWAY_TOKENS_FILE"

// apiReplicasEnv gives `slipway api --replicas` its default.
const apiReplicasEnv = "SLIPWAY_API_REPLICAS"

// envInt is the integer in environment variable name, or def when it is unset or not a
// positive integer.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// devTokenFile is where `slipway dev` keeps its token (mode 0600); the CLI reads it when
// $SLIPWAY_TOKEN is not set.
const devTokenFile = "dev-token"

// newAPIHandler builds the HTTP API from the flags.
func newAPIHandler(c client.Client, namespace string, f *apiFlags, check func(context.Context) map[string]error) (http.Handler, error) {
	tokens := f.tokens
	if tokens == nil {
		var err error
		if tokens, err = loadTokens(f.tokensFile); err != nil {
			return nil, err
		}
	}
	dash, err := f.dashboard.config()
	if err != nil {
		return nil, err
	}
	s, err := starter.New(starter.Config{
		Dashboard:      dash,
		Client:         c,
		Namespace:      namespace,
		DeploymentsDir: f.deploymentsDir,
		Tokens:         tokens,
		WebUIURL:       f.uiURL,
		EngineCheck:    check,
		Replicas:       f.replicas,
		ObserveRequest: f.observe(),
	})
	if err != nil {
		return nil, err
	}
	return f.withMetrics(s.Handler()), nil
}

// loadTokens reads the tokens file (flag, then $SLIPWAY_TOKENS_FILE) or $SLIPWAY_TOKENS.
func loadTokens(path string) (*starter.Tokens, error) {
	if path == "" {
		path = os.Getenv(tokensFileEnv)
	}
	if path != "" {
		return starter.LoadTokens(path)
	}
	if v := os.Getenv(starter.TokensEnv); v != "" {
		return starter.ParseTokens("$"+starter.TokensEnv, []byte(v))
	}
	return nil, fmt.Errorf("no API tokens: pass --tokens-file, or set $%s or $%s (see README, API tokens)", tokensFileEnv, starter.TokensEnv)
}

// devToken gives `slipway dev` its tokens: the configured ones when there are, otherwise one
// token with every permission on every environment, kept in <data-dir>/dev-token so it
// survives restarts and the CLI finds it. It returns a line for the banner.
func devToken(dataDir string, f *apiFlags) (string, error) {
	if f.tokensFile != "" || os.Getenv(tokensFileEnv) != "" || os.Getenv(starter.TokensEnv) != "" {
		return "from the configured tokens file", nil
	}
	path := filepath.Join(dataDir, devTokenFile)
	b, err := os.ReadFile(path)
	token := strings.TrimSpace(string(b))
	if errors.Is(err, os.ErrNotExist) || token == "" {
		var err error
		if token, _, err = starter.NewToken(); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("write dev token: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("read dev token: %w", err)
	}
	tokens, err := starter.NewTokens(starter.TokenEntry{
		Name:         "dev",
		SHA256:       starter.HashToken(token),
		Environments: []string{"*"},
		Permissions:  []starter.Permission{starter.PermRead, starter.PermRelease, starter.PermApprove},
	})
	if err != nil {
		return "", err
	}
	f.tokens = tokens
	return fmt.Sprintf("in %s (the CLI reads it; curl -H \"Authorization: Bearer $(cat %s)\")", path, path), nil
}

// engineCheck pings every cluster engine of the checked-in specs (deployments/*.yaml, not
// *.example.yaml), each endpoint once, in parallel.
func engineCheck(d engine.Dialer, dir string) func(context.Context) map[string]error {
	return func(ctx context.Context) map[string]error {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		sort.Strings(files)
		type target struct {
			name string
			ep   engine.Endpoint
		}
		var targets []target
		seen := map[string]bool{}
		out := map[string]error{}
		for _, file := range files {
			if strings.HasSuffix(file, ".example.yaml") {
				continue
			}
			env, err := spec.Load(file)
			if err != nil {
				out[file] = err
				continue
			}
			for _, c := range env.Clusters {
				ep := activities.EndpointOf(c)
				if seen[ep.Host] {
					continue
				}
				seen[ep.Host] = true
				targets = append(targets, target{name: env.Environment + "/" + c.Name, ep: ep})
			}
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				e, err := d.Dial(cctx, t.ep)
				if err == nil {
					err = e.Ping(cctx)
				}
				mu.Lock()
				out[t.name] = err
				mu.Unlock()
			}()
		}
		wg.Wait()
		return out
	}
}
