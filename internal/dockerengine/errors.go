package dockerengine

import (
	"context"
	"errors"
	"net"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/slipwayhq/slipway/engine"
)

// classify wraps a Docker client error into an *engine.Error whose kind tells activities
// whether retrying can help. nil stays nil; an *engine.Error is returned unchanged.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ee *engine.Error
	if errors.As(err, &ee) {
		return err
	}
	return &engine.Error{Kind: kindOf(err), Op: op, Err: err}
}

func kindOf(err error) engine.Kind {
	switch {
	case client.IsErrConnectionFailed(err), isNetError(err):
		return engine.KindUnavailable
	case errors.Is(err, context.DeadlineExceeded), cerrdefs.IsDeadlineExceeded(err), cerrdefs.IsUnavailable(err):
		// The engine did not answer within the call's timeout, or says it cannot now.
		return engine.KindUnavailable
	case errors.Is(err, context.Canceled):
		return engine.KindInternal
	case cerrdefs.IsNotFound(err):
		return engine.KindNotFound
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		return engine.KindConflict
	case cerrdefs.IsInvalidArgument(err), cerrdefs.IsNotImplemented(err),
		cerrdefs.IsPermissionDenied(err), cerrdefs.IsUnauthorized(err):
		// Permanent: the engine refuses the request as made (bad spec, unsupported,
		// not allowed); retrying the same request cannot help.
		return engine.KindInvalid
	default:
		return engine.KindInternal
	}
}

// isNetError reports connection-level failures the client did not wrap itself.
func isNetError(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

func isKind(err error, k engine.Kind) bool { return engine.KindOf(err) == k }
