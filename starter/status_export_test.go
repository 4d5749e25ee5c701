package starter

import (
	"context"

	"github.com/slipwayhq/slipway/workflows"
)

// StatusQueries are the status queries of s that GET /v1/releases/{id} sends to Temporal,
// without HTTP or auth: merged is sharedQuery (concurrent callers of one release share one
// query in flight), single is queryStatus (each caller its own query). BenchmarkStatusPollers
// measures them as its direct-client baselines.
func StatusQueries(s *Server) (merged, single func(ctx context.Context, id string) (*workflows.ReleaseStatus, error)) {
	return s.sharedQuery, func(ctx context.Context, id string) (*workflows.ReleaseStatus, error) {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
		defer cancel()
		return s.queryStatus(ctx, id)
	}
}
