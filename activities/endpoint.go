package activities

import (
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// EndpointOf says how to reach a cluster's engine. Used by the activities and by /readyz.
// It is the endpoint of the cluster's activity target (workflows.TargetOf), so the API and
// the activities can never disagree on how a spec cluster maps to an engine.
func EndpointOf(c spec.Cluster) engine.Endpoint {
	return workflows.TargetOf("", c).EngineEndpoint()
}
