package starter_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/workflows"
)

// browser is one headless Chromium (its own profile: its own cookies).
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1100, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return &browser{t: t, ctx: ctx}
}

// run runs actions with a timeout.
func (b *browser) run(t *testing.T, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		t.Fatalf("browser at %s: %v", loc, err)
	}
}

// waitJS polls a JavaScript expression until it is true.
func (b *browser) waitJS(t *testing.T, timeout time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := chromedp.Run(b.ctx, chromedp.Location())
			text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("waited %s for %s (%s) at %s: %v\npage: %s", timeout, what, expr, loc, err, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *browser) text(t *testing.T, expr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// screenshot saves a PNG of the viewport under the test's temp dir, and under
// $SLIPWAY_SCREENSHOTS (e.g. docs/img, relative to the repository) when set.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot %s: %d bytes", name, len(png))
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("SLIPWAY_SCREENSHOTS"); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(testenv.RepoRoot(t), d)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "dashboard-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// a11yJS lists the accessibility problems of the page: no lang or title, a visible form
// control without a label, a positive tabindex (which breaks the tab order).
const a11yJS = `(() => {
  const p = [];
  if (!document.documentElement.lang) p.push("no lang on <html>");
  if (!document.title.trim()) p.push("no <title>");
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const labelled = (el.id && document.querySelector('label[for="' + el.id + '"]')) || el.closest("label") ||
      el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!labelled) p.push("unlabelled " + el.outerHTML);
  }
  for (const el of document.querySelectorAll("button")) {
    if (!el.textContent.trim() && !el.getAttribute("aria-label")) p.push("button without a name " + el.outerHTML);
  }
  for (const el of document.querySelectorAll("[tabindex]")) {
    if (Number(el.getAttribute("tabindex")) > 0) p.push("positive tabindex " + el.outerHTML);
  }
  for (const svg of document.querySelectorAll("svg")) {
    if (svg.getAttribute("role") !== "img" || !svg.querySelector("title")) p.push("svg without role=img and a title");
  }
  return p.join("\n");
})()`

// colours returns the computed text and background colours of an element.
const coloursJS = `(sel) => { const el = document.querySelector(sel); const cs = getComputedStyle(el);
  let bg = cs.backgroundColor, e = el;
  while ((bg === "rgba(0, 0, 0, 0)" || bg === "transparent") && e.parentElement) { e = e.parentElement; bg = getComputedStyle(e).backgroundColor; }
  if (bg === "rgba(0, 0, 0, 0)" || bg === "transparent") bg = "rgb(255, 255, 255)";
  return cs.color + "|" + bg; }`

var rgbRE = regexp.MustCompile(`rgba?\((\d+), (\d+), (\d+)`)

// luminance is the WCAG 2 relative luminance of an "rgb(r, g, b)" colour.
func luminance(t *testing.T, css string) float64 {
	t.Helper()
	m := rgbRE.FindStringSubmatch(css)
	if m == nil {
		t.Fatalf("colour %q", css)
	}
	var l [3]float64
	for i := range 3 {
		v, _ := strconv.Atoi(m[i+1])
		c := float64(v) / 255
		if c <= 0.03928 {
			l[i] = c / 12.92
		} else {
			l[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
}

// checkA11y checks the page's basics, and the contrast of the main text and of the given
// elements against their background (WCAG AA: 4.5:1).
func (b *browser) checkA11y(t *testing.T, selectors ...string) {
	t.Helper()
	if p := b.text(t, a11yJS); p != "" {
		t.Errorf("accessibility problems:\n%s", p)
	}
	for _, sel := range append([]string{"main"}, selectors...) {
		pair := b.text(t, fmt.Sprintf("(%s)(%q)", coloursJS, sel))
		fg, bg, _ := strings.Cut(pair, "|")
		l1, l2 := luminance(t, fg), luminance(t, bg)
		ratio := (max(l1, l2) + 0.05) / (min(l1, l2) + 0.05)
		if ratio < 4.5 {
			t.Errorf("contrast of %s: %s on %s is %.2f:1, below 4.5:1", sel, fg, bg, ratio)
		}
	}
}

// login logs in through the form with the keyboard: the token typed, Tab reaches the
// button, Enter submits.
func (b *browser) login(t *testing.T, base, token string) {
	t.Helper()
	b.run(t, 30*time.Second, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc := b.text(t, "location.pathname"); loc != "/login" {
		t.Fatalf("not logged in, / led to %s, not /login", loc)
	}
	b.checkA11y(t, "label[for=token]", "button[type=submit]")
	b.run(t, 10*time.Second, chromedp.Focus(chromedp.ID("token")), chromedp.SendKeys(chromedp.ID("token"), token), chromedp.KeyEvent(kb.Tab))
	if tag := b.text(t, `document.activeElement.tagName + ":" + document.activeElement.type`); tag != "BUTTON:submit" {
		t.Errorf("Tab from the token field reaches %s, not the submit button", tag)
	}
	b.run(t, 10*time.Second, chromedp.Focus(chromedp.ID("token")), chromedp.KeyEvent(kb.Enter))
	b.waitJS(t, 30*time.Second, "the dashboard after login", `location.pathname === "/" && document.body.innerText.includes("Logged in as")`)
}

// TestDashboardInBrowser drives the dashboard in headless Chromium over one release history
// on the real stack (embedded Temporal, the worker, the machine's Docker engine, demo
// images): log in; the fleet matrix after a release; a gated release followed live, approved
// from its page with the keyboard, and followed live to its end; a rolled-back release's
// evidence chart (latency); a release paused and resumed from its page; a reader refused a
// write. Each step saves a screenshot and checks the basics of accessibility.
func TestDashboardInBrowser(t *testing.T) {
	chromium := testenv.RequireChromium(t)
	env := e2eEnv(t)
	a := newAPI(t, nil)
	startWorker(t)
	c := a.client(tokAdmin)
	ctx := context.Background()
	base := a.srv.URL

	// The history: a first release of two services (no gate), then the checked-in spec gates web.
	status, _, body := a.do("POST", "/v1/releases?wait=4m&description=first", tokAdmin, yamlCT,
		[]byte(specYAML(env, svc{name: "web", version: "1.0.0"}, svc{name: "api", version: "1.0.0"})))
	if first := a.release(status, body); status != 200 || first.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("first release: %d %s", status, body)
	}
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0", approval: true}, svc{name: "api", version: "1.0.0"}))

	admin := newBrowser(t, chromium)
	t.Run("log in", func(t *testing.T) {
		admin.login(t, base, tokAdmin)
		cookies, err := chromedp.Run(admin.ctx, chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
			r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
			return r.Cookies, err
		}))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ck := range cookies {
			if ck.Name == "slipway_session" {
				found = true
				if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict {
					t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict", ck)
				}
			}
		}
		if !found {
			t.Fatal("no session cookie after login")
		}
		if js := admin.text(t, "document.cookie"); strings.Contains(js, "slipway_session") {
			t.Error("the session cookie is readable from JavaScript")
		}
		admin.screenshot(t, "login")
	})

	t.Run("fleet matrix", func(t *testing.T) {
		admin.run(t, 2*time.Minute, chromedp.Navigate(base+"/environments/"+env), chromedp.WaitVisible(chromedp.CSS("table.matrix")))
		for _, s := range []string{"web", "api"} {
			cell := admin.text(t, fmt.Sprintf(`(document.querySelector('table.matrix td[data-service="%s"][data-cluster="c1"] .role-traffic') || {textContent: "no version in traffic: " + document.querySelector("main").innerText}).textContent`, s))
			if !strings.Contains(cell, "1.0.0") || !strings.Contains(cell, "in traffic 1/1") {
				t.Errorf("matrix cell %s × c1: %q", s, cell)
			}
		}
		if rows := admin.text(t, `String(document.querySelectorAll("table.recent tbody tr").length)`); rows != "1" {
			t.Errorf("recent releases: %s rows, want 1", rows)
		}
		if o := admin.text(t, `document.querySelector("table.recent td.outcome").textContent`); o != "succeeded" {
			t.Errorf("recent release outcome %q", o)
		}
		admin.checkA11y(t, "table.matrix th", "table.matrix .ver small")
		admin.screenshot(t, "fleet")
	})

	// Two releases at once: web through its gate, api to a slow version (rolled back).
	gated, err := c.StartRelease(ctx, apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
		Environment: env, Services: map[string]string{"web": "1.1.0"}, Description: "new front page",
		BuildURL: "https://ci.example/job/web/42/", Commit: "0123456789abcdef"}})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := c.StartRelease(ctx, apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
		Environment: env, Services: map[string]string{"api": "bad-latency"}}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("approve a gated release and watch it live", func(t *testing.T) {
		admin.run(t, 30*time.Second, chromedp.Navigate(base+"/releases/"+gated.ID), chromedp.WaitVisible(chromedp.ID("release")))
		if b := admin.text(t, `document.querySelector("dd a[href^='https://ci.example']").textContent`); !strings.Contains(b, "/job/web/42/") {
			t.Errorf("build link %q", b)
		}
		// The page follows the release (and reloads itself when the gate opens).
		admin.waitJS(t, 3*time.Minute, "the approve form", `!!document.querySelector("form.gate button.approve")`)
		admin.checkA11y(t, "#phase", "button.approve", "button.abort")
		admin.screenshot(t, "gate")
		// Keyboard: focus the approve button and press Enter.
		admin.run(t, 30*time.Second, chromedp.Focus(chromedp.CSS("form.gate button.approve")), chromedp.KeyEvent(kb.Enter))
		admin.waitJS(t, 30*time.Second, "the approval", `location.search.includes("done=approve") && document.querySelector(".flash") !== null`)
		if by := admin.text(t, `document.getElementById("approved-by").textContent`); by != "admin" {
			t.Errorf("approved by %q", by)
		}
		// From here the page is not reloaded: the marker stays while the stream moves it on.
		admin.run(t, 10*time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`window.slipwayMarker = "same page"; true`)(ctx, tg)
			return err
		}))
		admin.waitJS(t, 3*time.Minute, "the outcome over the event stream",
			`window.slipwayMarker === "same page" && document.getElementById("outcome").textContent === "succeeded" &&
			 document.querySelector('div.cluster[data-service="web"] .cl-phase').textContent === "done" &&
			 document.getElementById("timeline").children.length > 3 && document.getElementById("live").dataset.state === "ended"`)
		admin.screenshot(t, "live")
	})

	t.Run("rolled-back release shows its evidence", func(t *testing.T) {
		final, err := c.GetRelease(ctx, bad.ID, 4*time.Minute)
		if err != nil || final.Outcome != workflows.OutcomeRolledBack {
			t.Fatalf("bad release: %v %+v", err, final)
		}
		admin.run(t, 30*time.Second, chromedp.Navigate(base+"/releases/"+bad.ID), chromedp.WaitVisible(chromedp.CSS("svg.evidence-chart")))
		if o := admin.text(t, `document.getElementById("outcome").textContent`); o != "rolled_back" {
			t.Errorf("outcome %q", o)
		}
		title := admin.text(t, `document.querySelector("figure.verdict-failed svg.evidence-chart title").textContent`)
		if !strings.Contains(title, "error rate canary") || !strings.Contains(title, "api on c1") {
			t.Errorf("chart title %q", title)
		}
		// bad-latency answers 300 ms late: the canary's p95 bar is drawn taller than stable's.
		h := admin.text(t, `(() => { const f = document.querySelector("figure.verdict-failed");
		  const c = f.querySelector('rect[data-series="canary-p95"]'), s = f.querySelector('rect[data-series="stable-p95"]');
		  return c.getAttribute("height") + "|" + (s ? s.getAttribute("height") : "0"); })()`)
		ch, sh, _ := strings.Cut(h, "|")
		cf, _ := strconv.ParseFloat(ch, 64)
		sf, _ := strconv.ParseFloat(sh, 64)
		if cf <= sf || cf < 10 {
			t.Errorf("canary p95 bar %s against stable %s (%s)", ch, sh, admin.text(t, `document.querySelector("figure.verdict-failed figcaption").textContent`))
		}
		if href := admin.text(t, `(document.querySelector("a[href*='/namespaces/']") || {href: ""}).href`); !strings.Contains(href, bad.ID) {
			t.Errorf("Web UI link %q", href)
		}
		admin.checkA11y(t, "figcaption")
		// The chart in view: the screenshot shows it (docs/dashboard.md).
		admin.run(t, 10*time.Second, chromedp.ScrollIntoView(chromedp.CSS("figure.verdict-failed")))
		admin.screenshot(t, "evidence")
	})

	// Pause and resume: a release held at its gate is paused from its page, approved (it then
	// holds in the paused phase before rolling out), resumed, and followed to its end.
	t.Run("pause and resume a release from its page", func(t *testing.T) {
		rel, err := c.StartRelease(ctx, apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
			Environment: env, Services: map[string]string{"web": "2.0.0"}, Description: "pause test"}})
		if err != nil {
			t.Fatal(err)
		}
		admin.run(t, 30*time.Second, chromedp.Navigate(base+"/releases/"+rel.ID), chromedp.WaitVisible(chromedp.ID("release")))
		admin.waitJS(t, 3*time.Minute, "the gate's approve form", `!!document.querySelector("form.gate button.approve") && !!document.querySelector("button.pause")`)
		admin.run(t, 10*time.Second, chromedp.SendKeys(chromedp.ID("pause-reason"), "lunch"), chromedp.Click(chromedp.CSS("button.pause")))
		admin.waitJS(t, 30*time.Second, "the pause", `location.search.includes("done=pause") && !!document.querySelector(".flash") &&
		  document.getElementById("phase").textContent.includes("(paused)") && !!document.querySelector("button.resume") && !document.querySelector("button.pause")`)
		// Approved while paused: the release holds before its rollout, in the paused phase.
		admin.run(t, 30*time.Second, chromedp.Click(chromedp.CSS("form.gate button.approve")))
		admin.waitJS(t, 30*time.Second, "the approval", `location.search.includes("done=approve")`)
		admin.waitJS(t, time.Minute, "the paused phase", `document.getElementById("phase").textContent === "paused" &&
		  document.getElementById("outcome").textContent === "running" && !!document.querySelector("button.resume")`)
		if tl := admin.text(t, `document.getElementById("timeline").innerText`); !strings.Contains(tl, "paused by admin: lunch") {
			t.Errorf("timeline without the pause:\n%s", tl)
		}
		admin.checkA11y(t, "#phase", "button.resume", "label[for=resume-reason]")
		admin.screenshot(t, "paused")
		// Resumed with the keyboard: the page follows the rollout to its end.
		admin.run(t, 30*time.Second, chromedp.Focus(chromedp.CSS("button.resume")), chromedp.KeyEvent(kb.Enter))
		admin.waitJS(t, 30*time.Second, "the resume", `location.search.includes("done=resume") && !!document.querySelector("button.pause")`)
		admin.waitJS(t, 3*time.Minute, "progress after the resume, to the outcome",
			`document.getElementById("outcome").textContent === "succeeded" &&
			 document.querySelector('div.cluster[data-service="web"] .cl-phase').textContent === "done" &&
			 document.getElementById("timeline").innerText.includes("resumed by admin")`)
		if tl := admin.text(t, `document.getElementById("timeline").innerText`); !strings.Contains(tl, "rolling_out") {
			t.Errorf("no rollout after the resume in the timeline:\n%s", tl)
		}
		if n := admin.text(t, `String(document.querySelectorAll("section.actions:not([hidden]) form").length)`); n != "0" {
			t.Errorf("%s decision forms still shown for the ended release", n)
		}
		admin.screenshot(t, "resumed")
		final, err := c.GetRelease(ctx, rel.ID, time.Minute)
		if err != nil || final.Outcome != workflows.OutcomeSucceeded || final.Status.Paused || final.Status.ApprovedBy != "admin" {
			t.Fatalf("after the resume: %v %+v", err, final)
		}
	})

	t.Run("a reader is refused a write", func(t *testing.T) {
		reader := newBrowser(t, chromium)
		reader.login(t, base, tokReader)
		reader.run(t, 30*time.Second, chromedp.Navigate(base+"/releases/"+bad.ID), chromedp.WaitVisible(chromedp.ID("release")))
		if n := reader.text(t, `String(document.querySelectorAll("section.actions form").length)`); n != "0" {
			t.Errorf("the reader sees %s decision forms", n)
		}
		// Post the form anyway (with the reader's own CSRF token): refused, 403.
		reader.run(t, 10*time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { const f = document.createElement("form");
		  f.method = "post"; f.action = location.pathname + "/pause";
		  const i = document.createElement("input"); i.type = "hidden"; i.name = "csrf";
		  i.value = document.querySelector('form[action="/logout"] input[name=csrf]').value;
		  f.appendChild(i); document.body.appendChild(f); f.submit(); return true; })()`)(ctx, tg)
			return err
		}))
		reader.waitJS(t, 30*time.Second, "the refusal", `!!document.querySelector('.problem[data-status="403"]')`)
		if p := reader.text(t, `document.querySelector(".problem").textContent`); !strings.Contains(p, `lacks the "approve" permission`) {
			t.Errorf("refusal %q", p)
		}
		reader.screenshot(t, "refused")
	})
}
