package starter

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// LoadTestHandler serves only the load-test routes of s (with the server's panic recovery),
// for the load-test route tests while the routes are not in the main router.
func LoadTestHandler(s *Server) http.Handler {
	e := gin.New()
	e.ContextWithFallback = true
	e.Use(s.recover)
	s.registerLoadTestRoutes(&e.RouterGroup)
	return e
}
