// Palisade console: the overview chart (uPlot), live tail (server-sent
// events) and export progress. Everything else is plain HTML forms.
"use strict";

function csrfToken() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
}

// ---- overview chart ----------------------------------------------------
function drawChart(box, range) {
  fetch(box.dataset.series + "?range=" + encodeURIComponent(range), { credentials: "same-origin" })
    .then((r) => r.json())
    .then((s) => {
      box.textContent = "";
      const opts = {
        width: Math.max(box.clientWidth - 10, 300),
        height: 300,
        series: [
          {},
          { label: "requests", stroke: "#1f5fbf" },
          { label: "blocked", stroke: "#b3261e" },
          { label: "activities", stroke: "#1b7a3a" },
          { label: "alerts", stroke: "#b36b00" },
        ],
        axes: [{}, {}],
      };
      new uPlot(opts, [s.t, s.requests, s.blocked, s.activities, s.alerts], box);
      box.dataset.drawn = range;
    })
    .catch((e) => { box.textContent = "chart unavailable: " + e; });
}

function setupOverview() {
  const box = document.getElementById("chart");
  if (!box) return;
  const buttons = document.querySelectorAll("button.range");
  buttons.forEach((b) => b.addEventListener("click", () => {
    buttons.forEach((o) => o.classList.toggle("on", o === b));
    drawChart(box, b.dataset.range);
  }));
  if (buttons.length) buttons[0].click();
}

// ---- live tail ---------------------------------------------------------
function cell(row, text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
  row.appendChild(td);
}

function setupTail() {
  const body = document.getElementById("tail-body");
  const state = document.getElementById("tail-state");
  if (!body) return;
  const events = new EventSource("/tail/events");
  events.addEventListener("ready", () => { state.textContent = "live"; });
  events.addEventListener("record", (e) => {
    const r = JSON.parse(e.data);
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    cell(tr, r.time, "/log/record/" + r.id);
    [r.kind, r.user, r.client_ip, r.app, r.method, r.url, String(r.status), r.action, r.policy, r.activity]
      .forEach((t) => cell(tr, t));
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > 500) body.removeChild(body.lastChild);
  });
  events.onerror = () => { state.textContent = "reconnecting…"; };
}

// ---- export progress ---------------------------------------------------
function setupExports() {
  const running = document.querySelectorAll('tr[data-state="running"]');
  running.forEach((tr) => {
    const id = tr.dataset.export;
    const bar = tr.querySelector("progress");
    const count = tr.querySelector(".count");
    const poll = () => {
      fetch("/exports/" + encodeURIComponent(id) + "/progress", { credentials: "same-origin" })
        .then((r) => r.json())
        .then((p) => {
          if (bar) { bar.max = Math.max(p.total, 1); bar.value = p.done; }
          if (count) count.textContent = p.done + " / " + p.total;
          if (p.state === "running") setTimeout(poll, 300);
          else location.reload();
        })
        .catch(() => setTimeout(poll, 1000));
    };
    poll();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupOverview();
  setupTail();
  setupExports();
});
