// Package devserver runs an embedded Temporal server (SQLite store, on a file or in memory)
// and the Temporal Web UI inside the current process, so `slipway dev` and the integration
// tests need nothing but this binary. Production runs the worker and API against a real
// Temporal cluster instead (see `slipway worker` and `slipway api`).
package devserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

// Options configure the embedded server.
type Options struct {
	// DBFile is the SQLite file. Ignored when Ephemeral. Default .slipway/temporal.db.
	DBFile string
	// Ephemeral keeps everything in memory: gone when the process ends (tests).
	Ephemeral bool
	// IP the server and UI bind to. Default 127.0.0.1.
	IP string
	// GRPCPort of the Temporal frontend. 0 picks a free port (tests); `slipway dev` passes 7233.
	GRPCPort int
	// UIPort of the Web UI. 0 picks a free port; -1 disables the UI.
	UIPort int
	// UIWriteActions lets the Web UI terminate, cancel, reset and signal workflows. Off by
	// default: the UI has no authentication of its own, and a release terminated from it
	// bypasses Slipway's rollback (the UI server then answers 405 to every write).
	UIWriteActions bool
	// Namespace to create (with Slipway's search attributes). Default "default".
	Namespace string
	// SearchAttributes to register on the namespace: name → Temporal type name
	// ("Keyword", "KeywordList", "Text", "Int", "Double", "Bool", "Datetime").
	SearchAttributes map[string]string
	// LogLevel of the Temporal server's own log: debug, info, warn, error (default warn).
	LogLevel string
	// LogFile receives the server's log; empty means standard error.
	LogFile string
}

// Server is a running embedded Temporal server with its Web UI.
type Server struct {
	opts     Options
	server   temporal.Server
	ui       *uiserver.Server
	hostPort string
	uiURL    string
	client   client.Client
}

// Start starts the server, creates the namespace with its search attributes, and returns
// once a client can reach it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if !opts.Ephemeral && opts.DBFile == "" {
		opts.DBFile = filepath.Join(".slipway", "temporal.db")
	}
	var err error
	if opts.GRPCPort, err = portOrFree(opts.IP, opts.GRPCPort, "Temporal gRPC"); err != nil {
		return nil, err
	}
	attrs, err := indexedTypes(opts.SearchAttributes)
	if err != nil {
		return nil, err
	}

	sqlConf, err := sqlConfig(opts, attrs)
	if err != nil {
		return nil, err
	}
	conf, err := serverConfig(opts, sqlConf)
	if err != nil {
		return nil, err
	}
	logger := tlog.NewZapLogger(tlog.BuildZapLogger(tlog.Config{Level: opts.LogLevel, Format: "json", OutputFile: opts.LogFile}))
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("temporal authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("temporal claim mapper: %w", err)
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for _, svc := range []primitives.ServiceName{primitives.FrontendService, primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		hosts[svc] = static.SingleLocalHost(net.JoinHostPort(opts.IP, strconv.Itoa(conf.Services[string(svc)].RPC.GRPCPort)))
	}
	dyn := dynamicconfig.StaticClient{
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                       8192,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key():       200,
		dynamicconfig.FrontendMaxNamespaceRPSPerInstance.Key():                 10000,
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key():            true,
		dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key():              true,
		dynamicconfig.FrontendEnableSchedules.Key():                            true,
		dynamicconfig.FrontendEnableUpdateWorkflowExecutionAsyncAccepted.Key(): true,
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	s := &Server{opts: opts, server: srv, hostPort: net.JoinHostPort(opts.IP, strconv.Itoa(opts.GRPCPort))}

	if opts.UIPort >= 0 {
		if s.opts.UIPort, err = portOrFree(opts.IP, opts.UIPort, "Web UI"); err != nil {
			s.Stop()
			return nil, err
		}
		s.ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host:                opts.IP,
			Port:                s.opts.UIPort,
			TemporalGRPCAddress: s.hostPort,
			EnableUI:            true,
			CORS:                uiconfig.CORS{CookieInsecure: true},
			HideLogs:            true,
			DisableNewsFetch:    true,
			DisableWriteActions: !opts.UIWriteActions,
			DefaultNamespace:    opts.Namespace,
		}))
		go func() { _ = s.ui.Start() }()
		s.uiURL = "http://" + net.JoinHostPort(opts.IP, strconv.Itoa(s.opts.UIPort))
	}

	c, err := client.DialContext(ctx, client.Options{HostPort: s.hostPort, Namespace: opts.Namespace, Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("connect to embedded temporal: %w", err)
	}
	s.client = c
	if err := EnsureSearchAttributes(ctx, c, opts.Namespace, opts.SearchAttributes); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// HostPort is the frontend's gRPC address (host:port).
func (s *Server) HostPort() string { return s.hostPort }

// UIURL is the Web UI's base URL, empty when the UI is off.
func (s *Server) UIURL() string { return s.uiURL }

// Namespace is the namespace the server was started with.
func (s *Server) Namespace() string { return s.opts.Namespace }

// Client is a client of the namespace, owned by the server (closed by Stop).
func (s *Server) Client() client.Client { return s.client }

// Stop stops the UI and the server. Safe to call more than once.
func (s *Server) Stop() {
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	if s.ui != nil {
		s.ui.Stop()
		s.ui = nil
	}
	if s.server != nil {
		_ = s.server.Stop()
		s.server = nil
	}
}

// EnsureSearchAttributes adds the missing custom search attributes to a namespace (of any
// Temporal server, embedded or not). Existing attributes are left alone.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string, attrs map[string]string) error {
	if len(attrs) == 0 {
		return nil
	}
	want, err := indexedTypes(attrs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, t := range want {
		if _, ok := list.GetCustomAttributes()[name]; !ok {
			missing[name] = t
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}

func indexedTypes(attrs map[string]string) (map[string]enumspb.IndexedValueType, error) {
	out := make(map[string]enumspb.IndexedValueType, len(attrs))
	for name, t := range attrs {
		v, ok := enumspb.IndexedValueType_shorthandValue[t]
		if !ok {
			return nil, fmt.Errorf("search attribute %s: unknown type %q", name, t)
		}
		out[name] = enumspb.IndexedValueType(v)
	}
	return out, nil
}

func sqlConfig(opts Options, attrs map[string]enumspb.IndexedValueType) (*config.SQL, error) {
	conf := &config.SQL{PluginName: sqliteplugin.PluginName}
	if opts.Ephemeral {
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		conf.DatabaseName = "slipway-" + strconv.FormatUint(rand.Uint64(), 36)
		// The SQLite plugin creates the schema of an in-memory database itself.
	} else {
		// WAL and synchronous=NORMAL: measured 40% more workflows/s than the defaults
		// (FACTS.md) and still durable across a process crash.
		conf.ConnectAttributes = map[string]string{"mode": "rwc", "_journal_mode": "WAL", "_synchronous": "NORMAL"}
		conf.DatabaseName = opts.DBFile
		if err := os.MkdirAll(filepath.Dir(opts.DBFile), 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		if _, err := os.Stat(opts.DBFile); errors.Is(err, os.ErrNotExist) {
			if err := sqliteschema.SetupSchema(conf); err != nil {
				return nil, fmt.Errorf("create schema in %s: %w", opts.DBFile, err)
			}
		}
		// Release histories are the operators' business only.
		if err := os.Chmod(opts.DBFile, 0o600); err != nil {
			return nil, fmt.Errorf("restrict %s: %w", opts.DBFile, err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, opts.Namespace, false, attrs)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", opts.Namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(conf, ns); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", opts.Namespace, err)
	}
	return conf, nil
}

const clusterName = "active"

func serverConfig(opts Options, sqlConf *config.SQL) (*config.Config, error) {
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = opts.IP
	conf.Persistence.DefaultStore = "sqlite"
	conf.Persistence.VisibilityStore = "sqlite"
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite": {SQL: sqlConf}}
	httpPort, err := freePort(opts.IP)
	if err != nil {
		return nil, err
	}
	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{clusterName: {
			Enabled:                true,
			InitialFailoverVersion: 1,
			RPCAddress:             net.JoinHostPort(opts.IP, strconv.Itoa(opts.GRPCPort)),
			HTTPAddress:            net.JoinHostPort(opts.IP, strconv.Itoa(httpPort)),
			ClusterID:              "slipway-dev",
		}},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for _, name := range []string{"frontend", "history", "matching", "worker"} {
		var svc config.Service
		svc.RPC.BindOnIP = opts.IP
		if name == "frontend" {
			svc.RPC.GRPCPort = opts.GRPCPort
			svc.RPC.HTTPPort = httpPort
		} else if svc.RPC.GRPCPort, err = freePort(opts.IP); err != nil {
			return nil, err
		}
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = net.JoinHostPort(opts.IP, strconv.Itoa(opts.GRPCPort))
	return &conf, nil
}

// portOrFree returns port when it can be bound (a clear error when taken), or a free port for 0.
func portOrFree(ip string, port int, what string) (int, error) {
	if port == 0 {
		return freePort(ip)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("%s port %d on %s is not free (is another slipway or temporal running?): %w", what, port, ip, err)
	}
	_ = l.Close()
	return port, nil
}

// freePort finds a port the server can bind a moment later. Not one the kernel picks for
// port 0: that comes from the ephemeral range, from which every outgoing connection of the
// machine also takes its local port, so on a busy machine (tests' probes and clients) one
// could take it before the server binds it, and the Temporal server exits (a fatal log) when
// a service's listener cannot bind. A random port below the ephemeral range is free of
// that race; only another process choosing the same port at the same moment could take it.
func freePort(ip string) (int, error) {
	lo, hi := 10000, ephemeralLow()-1
	if hi-lo >= 1000 {
		for range 64 {
			port := lo + rand.IntN(hi-lo+1)
			if l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port))); err == nil {
				_ = l.Close() // it only found a free port
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux: 32768 unless
// configured otherwise; the same where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return 32768
	}
	return n
}
