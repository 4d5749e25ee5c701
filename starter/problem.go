package starter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
)

// apiError is an error with its HTTP status decided where it happened (auth, conflicts,
// bad requests). Everything else is classified by problemFor.
type apiError struct {
	status int
	title  string
	detail string
	// inFlight names the release a refused release overlaps.
	inFlight string
	// retryAfter in seconds (429).
	retryAfter int
	notReady   map[string]string
	cause      error
}

func (e *apiError) Error() string {
	if e.detail != "" {
		return e.title + ": " + e.detail
	}
	return e.title
}

func (e *apiError) Unwrap() error { return e.cause }

func badRequest(format string, a ...any) error {
	return &apiError{status: http.StatusBadRequest, title: "Bad request", detail: fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &apiError{status: http.StatusNotFound, title: "Not found", detail: fmt.Sprintf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &apiError{status: http.StatusConflict, title: "Conflict", detail: fmt.Sprintf(format, a...)}
}

func unauthorized(detail string) error {
	return &apiError{status: http.StatusUnauthorized, title: "Unauthorized", detail: detail}
}

func forbidden(format string, a ...any) error {
	return &apiError{status: http.StatusForbidden, title: "Forbidden", detail: fmt.Sprintf(format, a...)}
}

// problemFor is the one place that maps an error to an HTTP status and a problem document.
func problemFor(err error) *apiclient.Problem {
	var ae *apiError
	if errors.As(err, &ae) {
		return &apiclient.Problem{
			Type:       problemType(ae.status),
			Title:      ae.title,
			Status:     ae.status,
			Detail:     ae.detail,
			InFlight:   ae.inFlight,
			RetryAfter: ae.retryAfter,
			NotReady:   ae.notReady,
		}
	}
	var se spec.Errors
	if errors.As(err, &se) {
		p := &apiclient.Problem{
			Type:   problemType(http.StatusBadRequest),
			Title:  "Invalid deployment spec",
			Status: http.StatusBadRequest,
			Detail: fmt.Sprintf("the spec has %d problem(s)", len(se)),
		}
		for _, fe := range se {
			if fe == nil {
				continue
			}
			p.Errors = append(p.Errors, apiclient.FieldError{
				File: fe.File, Line: fe.Line, Column: fe.Column, Path: fe.Path, Message: fe.Message,
			})
		}
		return p
	}
	var fe *spec.FieldError
	if errors.As(err, &fe) {
		return &apiclient.Problem{
			Type: problemType(http.StatusBadRequest), Title: "Invalid deployment spec", Status: http.StatusBadRequest,
			Detail: fe.Error(),
			Errors: []apiclient.FieldError{{File: fe.File, Line: fe.Line, Column: fe.Column, Path: fe.Path, Message: fe.Message}},
		}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiclient.Problem{
			Type: problemType(http.StatusRequestEntityTooLarge), Title: "Request body too large",
			Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("the body is larger than %d bytes", mbe.Limit),
		}
	}
	status, title := temporalStatus(err)
	return &apiclient.Problem{Type: problemType(status), Title: title, Status: status, Detail: err.Error()}
}

// temporalStatus classifies errors of the Temporal client (and context ends).
func temporalStatus(err error) (int, string) {
	var (
		nf  *serviceerror.NotFound
		as  *serviceerror.WorkflowExecutionAlreadyStarted
		un  *serviceerror.Unavailable
		re  *serviceerror.ResourceExhausted
		de  *serviceerror.DeadlineExceeded
		ia  *serviceerror.InvalidArgument
		fp  *serviceerror.FailedPrecondition
		nsn *serviceerror.NamespaceNotFound
	)
	switch {
	case errors.As(err, &nf):
		return http.StatusNotFound, "Not found"
	case errors.As(err, &as):
		return http.StatusConflict, "Conflict"
	case errors.As(err, &re):
		return http.StatusServiceUnavailable, "Temporal is overloaded"
	case errors.As(err, &un), errors.As(err, &de), errors.As(err, &nsn),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "Temporal unavailable"
	case errors.As(err, &ia):
		return http.StatusBadRequest, "Bad request"
	case errors.As(err, &fp):
		return http.StatusConflict, "Conflict"
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return 499, "Client closed request"
	}
	return http.StatusInternalServerError, "Internal error"
}

func problemType(status int) string {
	return "https://slipway.dev/problems/" + strconv.Itoa(status)
}

// writeProblem answers with the problem document for err (and aborts the handler chain).
func writeProblem(c *gin.Context, err error) {
	p := problemFor(err)
	if p.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="slipway"`)
	}
	if p.Status >= 500 {
		if s, ok := c.Get(ctxServer); ok {
			s.(*Server).log.Error("request failed", "method", c.Request.Method, "path", c.FullPath(), "status", p.Status, "err", err)
		}
	}
	c.Abort()
	c.Render(p.Status, problemRender{p})
}

// problemRender writes a problem as application/problem+json.
type problemRender struct{ p *apiclient.Problem }

func (r problemRender) Render(w http.ResponseWriter) error {
	r.WriteContentType(w)
	b, err := jsonMarshal(r.p)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (r problemRender) WriteContentType(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
}
