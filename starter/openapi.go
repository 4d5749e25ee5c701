package starter

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openapiJSON is the API's OpenAPI 3.1 description. TestOpenAPIMatchesRouter keeps it true:
// every route of the router is described, and every described operation is routed.
//
//go:embed openapi.json
var openapiJSON []byte

// OpenAPI returns the API's OpenAPI description (JSON).
func OpenAPI() []byte { return append([]byte(nil), openapiJSON...) }

func (s *Server) openapi(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", openapiJSON)
}
