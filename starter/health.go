package starter

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/apiclient"
)

// healthz answers GET /healthz: the process is up.
func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, apiclient.Health{Ready: true, Checks: map[string]string{"process": "ok"}})
}

// readyz answers GET /readyz: Temporal answers, a worker polls the task queue, and every
// cluster engine of the checked-in specs answers (when Config.EngineCheck is set). 503 with
// what is not ready otherwise.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	checks := map[string]string{}
	var mu sync.Mutex
	set := func(k string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			checks[k] = err.Error()
		} else {
			checks[k] = "ok"
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := s.tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			set("temporal", fmt.Errorf("Temporal does not answer: %w", err)) //nolint:staticcheck // ST1005: "Temporal" is a name; /readyz shows this text as is
			set("worker", fmt.Errorf("unknown: Temporal does not answer"))
			return
		}
		set("temporal", nil)
		set("worker", s.workerPolling(ctx))
	}()
	if s.cfg.EngineCheck != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := s.cfg.EngineCheck(ctx)
			names := make([]string, 0, len(res))
			for k := range res {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				set("engine:"+k, res[k])
			}
		}()
	}
	wg.Wait()
	notReady := map[string]string{}
	for k, v := range checks {
		if v != "ok" {
			notReady[k] = v
		}
	}
	if len(notReady) > 0 {
		writeProblem(c, &apiError{status: http.StatusServiceUnavailable, title: "Not ready",
			detail: fmt.Sprintf("%d check(s) failing", len(notReady)), notReady: notReady})
		return
	}
	c.JSON(http.StatusOK, apiclient.Health{Ready: true, Checks: checks})
}

// workerPolling checks that some worker polls the task queue for workflow and activity tasks.
func (s *Server) workerPolling(ctx context.Context) error {
	for _, tq := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
		resp, err := s.tc.DescribeTaskQueue(ctx, s.cfg.TaskQueue, tq)
		if err != nil {
			return fmt.Errorf("describe task queue %q: %w", s.cfg.TaskQueue, err)
		}
		if len(resp.GetPollers()) == 0 {
			kind := "workflow"
			if tq == enumspb.TASK_QUEUE_TYPE_ACTIVITY {
				kind = "activity"
			}
			return fmt.Errorf("no worker polls task queue %q for %s tasks", s.cfg.TaskQueue, kind)
		}
	}
	return nil
}
