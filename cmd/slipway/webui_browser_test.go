package main

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestWebUIShowsRolledBackAsFailed opens the Temporal Web UI of the in-process stack (the
// embedded server and its UI server, as `slipway dev` runs them) in headless Chromium after
// one succeeded and one rolled-back release, and reads the workflow list as a person would:
// the rolled-back release's row says Failed, the succeeded one's Completed. It saves a
// screenshot of the list ($TMPDIR/slipway-screenshots/webui-releases.jpg).
func TestWebUIShowsRolledBackAsFailed(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("SLIPWAY_REQUIRE_DOCKER") != "" {
			t.Fatalf("no chromium on PATH (scripts/ensure-test-tools.sh installs it); CI or SLIPWAY_REQUIRE_DOCKER is set, so this is a failure")
		}
		t.Skip("no chromium on PATH (scripts/ensure-test-tools.sh installs it)")
	}
	s := newCLIStackUI(t, 0)
	env := cliEnv(t)
	dir := t.TempDir()
	good := writeCLISpec(t, dir, "good.yaml", cliSpec(env, "1.0.0", false))
	okID, badID := releaseGoodThenBad(t, s, good)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1600, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	list := s.srv.UIURL() + "/namespaces/" + url.PathEscape(s.srv.Namespace()) + "/workflows?query=" +
		url.QueryEscape("WorkflowType = 'Release' AND SlipwayEnvironment = '"+env+"'")
	// The status shown in the row of each release: walk up from the link to the workflow
	// until an ancestor (its row) names a status. The UI shows statuses upper-case (CSS), so
	// compare upper-cased.
	const rowStatus = `(function(id){
		const a = Array.from(document.querySelectorAll('a')).find(e => (e.getAttribute('href')||'').includes(id));
		if (!a) return '';
		for (let e = a; e; e = e.parentElement) {
			const t = (e.innerText || '').toUpperCase();
			for (const s of ['COMPLETED', 'FAILED', 'RUNNING', 'TERMINATED', 'CANCELED', 'TIMED OUT']) {
				if (t.includes(s)) return s;
			}
		}
		return '';
	})`
	var okStatus, badStatus string
	// The UI app can answer a first load with its error page while its server warms up on
	// this loaded machine: load the list again, up to three times.
	for try := 0; try < 3; try++ {
		err = chromedp.Do(ctx, chromedp.Navigate(list), chromedp.Poll[chromedp.Void](
			rowStatus+`('`+okID+`') !== '' && `+rowStatus+`('`+badID+`') !== ''`,
			chromedp.WithPollingInterval(500*time.Millisecond), chromedp.WithPollingTimeout(25*time.Second)))
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err == nil {
		okStatus, err = chromedp.Run(ctx, chromedp.Evaluate[string](rowStatus+`('`+okID+`')`))
	}
	if err == nil {
		badStatus, err = chromedp.Run(ctx, chromedp.Evaluate[string](rowStatus+`('`+badID+`')`))
	}
	if shot, serr := chromedp.Run(ctx, chromedp.FullScreenshot(90)); serr == nil {
		path := filepath.Join(os.TempDir(), "slipway-screenshots", "webui-releases.jpg")
		if merr := os.MkdirAll(filepath.Dir(path), 0o755); merr == nil && os.WriteFile(path, shot, 0o644) == nil {
			t.Logf("screenshot: %s", path)
		}
	}
	if err != nil {
		text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		t.Fatalf("the Web UI's list at %s did not show both releases: %v\n%s", list, err, text)
	}
	if !strings.EqualFold(okStatus, "Completed") {
		t.Errorf("succeeded release %s shows %q in the Web UI's list, want Completed", okID, okStatus)
	}
	if !strings.EqualFold(badStatus, "Failed") {
		t.Errorf("rolled-back release %s shows %q in the Web UI's list, want Failed", badID, badStatus)
	}
	if strings.EqualFold(okStatus, badStatus) {
		t.Errorf("the two releases look the same in the list: %q", okStatus)
	}
}
