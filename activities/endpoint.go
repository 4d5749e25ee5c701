package activities

import (
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

// EndpointOf says how to reach a cluster's engine. Used by the activities and by /readyz.
func EndpointOf(c spec.Cluster) engine.Endpoint {
	ep := engine.Endpoint{Cluster: c.Name, Host: c.Endpoint}
	if c.TLS != nil {
		ep.TLSCA, ep.TLSCert, ep.TLSKey = c.TLS.CA, c.TLS.Cert, c.TLS.Key
		ep.TLSVerify = c.TLS.Verify == nil || *c.TLS.Verify
	}
	return ep
}
