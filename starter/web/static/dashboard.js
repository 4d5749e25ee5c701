// Slipway dashboard: live progress of a release over its event stream (SSE). The page works
// without this script; with it, the progress table, the phase and the timeline follow the
// release as it runs, and the page reloads when a gate opens or closes (to show its form).
(function () {
  "use strict";
  var root = document.getElementById("release");
  if (!root || root.dataset.running !== "true" || !window.EventSource) {
    return;
  }
  var live = document.getElementById("live");
  var gates = Number(root.dataset.gates || "0");
  var paused = root.dataset.paused === "true";
  var timeline = document.getElementById("timeline");
  var seen = {};
  Array.prototype.forEach.call(timeline.querySelectorAll("li[data-seq]"), function (li) {
    seen[li.dataset.seq] = true;
  });
  function phaseClass(p) { return "phase-" + String(p || "").replace(/_/g, "-"); }
  function setText(el, text, cls) {
    if (!el) { return; }
    el.textContent = text;
    if (cls) { el.className = cls; }
  }
  function esc(v) { return window.CSS && CSS.escape ? CSS.escape(v) : v; }
  var es = new EventSource(root.dataset.events);
  var submitting = false;
  // A form being posted navigates away: no reload may cancel it.
  document.addEventListener("submit", function () { submitting = true; es.close(); });
  es.onopen = function () { live.dataset.state = "on"; live.textContent = "live"; };
  es.onerror = function () {
    if (live.dataset.state !== "ended") { live.dataset.state = "off"; live.textContent = "reconnecting…"; }
  };
  es.addEventListener("phase", function (e) {
    var ev = JSON.parse(e.data);
    if (seen[ev.seq]) { return; }
    seen[ev.seq] = true;
    var li = document.createElement("li");
    li.dataset.seq = ev.seq;
    var t = document.createElement("time");
    t.textContent = new Date(ev.at).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    var ph = document.createElement("span");
    ph.className = phaseClass(ev.phase);
    ph.textContent = ev.phase;
    li.appendChild(t);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(ph);
    li.appendChild(document.createTextNode((ev.service ? " " + ev.service : "") + (ev.cluster ? "@" + ev.cluster : "") + ": " + ev.message));
    timeline.appendChild(li);
  });
  es.addEventListener("status", function (e) {
    var st = JSON.parse(e.data);
    setText(document.getElementById("phase"), st.phase + (st.paused && st.phase !== "paused" ? " (paused)" : ""), phaseClass(st.phase));
    setText(document.getElementById("approved-by"), st.approved_by || "");
    (st.services || []).forEach(function (sp) {
      var cell = root.querySelector('td.svc-phase[data-service="' + esc(sp.service) + '"]');
      setText(cell, sp.phase, "svc-phase " + phaseClass(sp.phase));
      (sp.clusters || []).forEach(function (cp) {
        var div = root.querySelector('div.cluster[data-service="' + esc(sp.service) + '"][data-cluster="' + esc(cp.cluster) + '"]');
        if (!div) { return; }
        setText(div.querySelector(".cl-phase"), cp.phase);
        setText(div.querySelector(".cl-count"), cp.updated + "/" + cp.replicas);
      });
    });
    var n = (st.gates || []).length;
    if (!submitting && (n !== gates || Boolean(st.paused) !== paused)) {
      es.close();
      window.location.reload();
    }
  });
  es.addEventListener("outcome", function (e) {
    var rel = JSON.parse(e.data);
    es.close();
    live.dataset.state = "ended";
    live.textContent = "ended: reload for the final view";
    setText(document.getElementById("outcome"), rel.outcome, "outcome outcome-" + rel.outcome);
    setText(document.getElementById("reason"), rel.reason || "");
    // An ended release takes no decision: its forms go.
    var actions = document.querySelector("section.actions");
    if (actions) { actions.hidden = true; }
  });
  es.addEventListener("error", function (e) {
    if (e.data) {
      var p = JSON.parse(e.data);
      live.dataset.state = "ended";
      live.textContent = "stream ended: " + (p.detail || p.title);
      es.close();
    }
  });
})();
