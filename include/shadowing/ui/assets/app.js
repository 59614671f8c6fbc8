/* Shadow Regions page: vanilla JS + inline SVG, no dependencies, no network beyond this app and Airflow's API. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const FAILOVER_DAG = "regional_failover";
  const CAPACITY_PAGE = 40;
  const state = { regions: [], region: null, detail: null, capacityFilter: "", capacityAll: false };

  // ───────────── small DOM helpers (text only through textContent: names come from data) ─────────────
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children.flat()) if (c) node.append(c);
    return node;
  }
  function title(text) { return svg("title", { text }); }
  function airflowUrl(path) { return new URL("../" + path, document.baseURI).toString(); }

  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    if (s < 90) return s + "s";
    if (s < 5400) return Math.round(s / 60) + "m";
    if (s < 172800) return Math.floor(s / 3600) + "h " + Math.round((s % 3600) / 60) + "m";
    return Math.round(s / 86400) + "d";
  }
  function fmtNum(v) {
    if (v === null || v === undefined) return "—";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return v.toFixed(0);
    return (Math.round(v * 10) / 10).toString();
  }
  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function badge(kind, text) { return el("span", { class: "badge " + kind, text }); }
  function readinessBadge(ready, failing) {
    if (ready === null || ready === undefined) return badge("none", "not checked");
    return ready ? badge("ok", "ready") : badge("bad", failing + " failing");
  }
  function outcomeBadge(outcome) {
    const kind = { succeeded: "ok", success: "ok", failed: "bad", aborted: "bad", running: "warn" }[outcome] || "none";
    return badge(kind, outcome || "—");
  }

  async function api(path) {
    const resp = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status + " " + (await resp.text()).slice(0, 200));
    return resp.json();
  }

  // ───────────────────────────────────────── region list ─────────────────────────────────────────
  async function loadRegions() {
    const body = document.querySelector("#regions tbody");
    try {
      const data = await api("api/regions");
      state.regions = data.regions;
      body.replaceChildren(...data.regions.map(regionRow));
      if (!data.regions.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted",
        text: "No primary region is configured or known to the warehouse yet." })));
      document.getElementById("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
    } catch (err) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "error", text: String(err) })));
    }
    highlightSelected();
  }

  function regionRow(r) {
    const bp = r.blueprint_version === null ? badge("none", "none yet")
      : el("span", {}, el("strong", { text: "v" + r.blueprint_version }), " ",
        el("span", { class: "muted", text: "(" + fmtAge(r.blueprint_age_seconds) + " old)" }));
    const health = r.health ? badge(r.health.healthy ? "ok" : "bad", r.health.verdict) : badge("none", "—");
    const fo = r.last_failover ? el("span", {}, outcomeBadge(r.last_failover.outcome), " ",
      el("span", { class: "muted small", text: (r.last_failover.kind === "failback" ? "failback" : r.last_failover.mode) + (r.last_failover.recovery_seconds !== null
        ? " · RTO " + fmtAge(r.last_failover.recovery_seconds) : "") })) : el("span", { class: "muted", text: "never" });
    return el("tr", { "data-region": r.region, onclick: () => { location.hash = encodeURIComponent(r.region); } },
      el("td", {}, el("strong", { text: r.region })), el("td", { text: r.shadow_region || "—" }), el("td", {}, bp),
      el("td", {}, readinessBadge(r.ready, r.failing_checks)), el("td", {}, health), el("td", {}, fo));
  }

  function highlightSelected() {
    for (const tr of document.querySelectorAll("#regions tbody tr")) {
      tr.classList.toggle("selected", tr.dataset.region === state.region);
    }
  }

  // ───────────────────────────────────────── region detail ─────────────────────────────────────────
  async function loadRegion(region) {
    state.region = region;
    highlightSelected();
    const host = document.getElementById("detail");
    host.hidden = false;
    if (!state.detail || state.detail.region !== region) {
      host.replaceChildren(el("div", { class: "card muted", text: "loading " + region + "…" }));
    }
    try {
      const detail = await api("api/regions/" + encodeURIComponent(region));
      // Another region was chosen while this one loaded (e.g. the default region, then a click): the newer
      // choice wins, whichever answer arrives last.
      if (state.region !== region) return;
      state.detail = detail;
      state.capacityAll = false;
      renderDetail(state.detail);
    } catch (err) {
      if (state.region !== region) return;
      host.replaceChildren(el("div", { class: "card error", text: String(err) }));
    }
  }

  function renderDetail(d) {
    const host = document.getElementById("detail");
    host.replaceChildren(summaryCard(d), readinessCard(d), capacityCard(d), graphCard(d), historyCard(d),
      failoverCard(d));
  }

  function stat(label, value, sub) {
    return el("div", { class: "stat" }, el("div", { class: "label", text: label }),
      el("div", { class: "value" }, value), sub ? el("div", { class: "muted small" }, sub) : null);
  }

  function summaryCard(d) {
    const bp = d.blueprint;
    const r = d.readiness;
    const cards = el("div", { class: "summary" },
      stat("Blueprint", bp ? "v" + bp.version : "none", bp ? fmtAge(bp.age_seconds) + " old · " + bp.services +
        " services · " + bp.instances + " instances" : "no valid refresh yet"),
      stat("Readiness", readinessBadge(r ? r.ready : null, r ? r.failing.length : 0),
        r ? r.total + " checks · " + fmtTime(r.checked_at) : "no readiness run yet"),
      stat("Primary health", d.health ? badge(d.health.healthy ? "ok" : "bad", d.health.verdict) : badge("none", "—"),
        d.health ? fmtTime(d.health.observed_at) : "no observation yet"),
      stat("Capacity fingerprint", d.capacity ? fmtAge(d.capacity.age_seconds) + " old" : "none",
        d.capacity ? d.capacity.services.length + " services" : ""),
      stat("Dependency graph", d.graph ? fmtAge(d.graph.age_seconds) + " old" : "none",
        d.graph ? d.graph.nodes.length + " services · " + d.graph.tiers.length + " tiers · " + d.graph.cycles.length +
          " cycles" : ""));
    return el("section", { class: "card", id: "summary" },
      el("h2", { text: d.region + " → " + (d.shadow_region || "?") }), cards, triggerForm(d), validationNote(d));
  }

  function validationNote(d) {
    const items = [];
    for (const [label, v] of [["capacity fingerprint", d.validation.capacity_fingerprint],
      ["dependency graph", d.validation.dependency_graph]]) {
      if (v && !v.latest_valid) {
        items.push(el("li", {}, el("span", { class: "error", text: "latest " + label + " failed validation" }),
          " (" + v.latest_errors.length + " failed expectations); the last valid one (#" + v.current_valid_id +
          ") stays current."));
      }
    }
    // Same frame, no target=_blank: Airflow sandboxes plugin iframes without allow-popups, so a new-tab link
    // from here would silently do nothing (the browser's own "open in new tab" still works).
    const docs = el("a", { href: "data-docs/" + (d.data_docs && d.data_docs.great_expectations ? "" :
      "#" + d.region), text: "validation Data Docs" });
    return el("div", { class: "small", style: "margin-top:10px" }, items.length ? el("ul", {}, items) : null,
      el("span", { class: "muted" }, "Latest validations: "), docs);
  }

  function triggerForm(d) {
    const mode = el("select", { name: "mode", "aria-label": "failover mode" },
      el("option", { value: "dry_run", text: "dry_run (plan only, no AWS change)", selected: true }),
      el("option", { value: "drill", text: "drill (launch in the shadow, no traffic move)" }),
      el("option", { value: "live", text: "live (move production traffic)" }));
    const status = el("span", { class: "small", id: "trigger-status" });
    // The region is re-rendered when a run ends: show the last run's outcome again in the new form.
    if (state.lastRun && state.lastRun.region === d.region) {
      status.replaceChildren("run ", runLink(state.lastRun.runId), ": ",
        el("span", { "data-run-state": state.lastRun.runState, text: state.lastRun.runState }));
    }
    const button = el("button", { type: "submit", text: "Trigger failover" });
    // A live failover needs the region typed (checked again by the DAG): a click alone never moves traffic.
    const confirmRegion = el("input", { name: "confirm_region", type: "text", autocomplete: "off",
      placeholder: "type " + d.region + " to confirm", "aria-label": "type the primary region to confirm a live failover",
      hidden: true });
    const syncConfirm = () => {
      const live = mode.value === "live";
      confirmRegion.hidden = !live;
      button.disabled = live && confirmRegion.value.trim() !== d.region;
    };
    mode.addEventListener("change", syncConfirm);
    confirmRegion.addEventListener("input", syncConfirm);
    const form = el("form", { class: "trigger", id: "trigger-form" },
      el("strong", { text: "Failover " + d.region + ":" }), mode, confirmRegion, button,
      el("a", { href: airflowUrl("dags/" + FAILOVER_DAG), target: "_top", class: "small",
        text: "open " + FAILOVER_DAG + " in Airflow" }), status);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (mode.value === "live" && confirmRegion.value.trim() !== d.region) return;
      button.disabled = true;
      status.textContent = "triggering…";
      try {
        const conf = { primary_region: d.region, mode: mode.value };
        if (mode.value === "live") conf.confirm_region = confirmRegion.value.trim();
        if (d.shadow_region) conf.shadow_region = d.shadow_region;
        // The page names the run, so a retry after a 5xx (Airflow's SQLite metadata DB answers "database
        // locked" under bursts) can never start a second failover: 409 means the first attempt went through.
        const runId = "shadow-regions__" + d.region + "__" + new Date().toISOString() + "__" +
          Math.random().toString(36).slice(2, 8);
        let resp, body, attempt = 0;
        for (; ; attempt++) {
          resp = await fetch(airflowUrl("api/v2/dags/" + FAILOVER_DAG + "/dagRuns"), {
            method: "POST", credentials: "same-origin",
            headers: { "Content-Type": "application/json", Accept: "application/json" },
            body: JSON.stringify({ dag_run_id: runId, logical_date: null, conf,
              note: "triggered from the Shadow Regions page" }) });
          body = await resp.json().catch(() => ({}));
          if (resp.status < 500 || attempt >= 4) break;
          status.textContent = "Airflow answered " + resp.status + ", retrying…";
          await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
        }
        if (!resp.ok && !(resp.status === 409 && attempt > 0))
          throw new Error("HTTP " + resp.status + ": " + JSON.stringify(body.detail || body).slice(0, 300));
        followRun(runId, status, d.region);
      } catch (err) {
        status.replaceChildren(el("span", { class: "error", text: "trigger failed: " + err.message }));
      } finally {
        syncConfirm();
      }
    });
    return form;
  }

  function runLink(runId) {
    return el("a", { href: airflowUrl("dags/" + FAILOVER_DAG + "/runs/" + encodeURIComponent(runId)),
      target: "_top", text: runId });
  }

  function followRun(runId, status, region) {
    const link = runLink(runId);
    const stateText = el("span", { "data-run-state": "queued", text: "queued" });
    status.replaceChildren("run ", link, ": ", stateText);
    const started = Date.now();
    const poll = async () => {
      try {
        const run = await api(airflowUrl("api/v2/dags/" + FAILOVER_DAG + "/dagRuns/" + encodeURIComponent(runId)));
        stateText.textContent = run.state;
        stateText.dataset.runState = run.state;
        if (run.state === "success" || run.state === "failed") {
          state.lastRun = { region, runId, runState: run.state };
          if (state.region === region) await loadRegion(region);
          loadRegions();
          return;
        }
      } catch (err) { stateText.textContent = String(err); }
      if (Date.now() - started < 15 * 60 * 1000) setTimeout(poll, 3000);
    };
    setTimeout(poll, 1500);
  }

  function readinessCard(d) {
    const r = d.readiness;
    const card = el("section", { class: "card", id: "readiness" }, el("h2", { text: "Readiness" }));
    if (!r) { card.append(el("p", { class: "muted", text: "No readiness check has run for this region yet." })); return card; }
    card.append(el("p", { class: "small muted", text: "run " + r.run_id + " · " + fmtTime(r.checked_at) +
      (r.blueprint_version ? " · blueprint v" + r.blueprint_version : "") }));
    card.append(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", { text: "check" }),
      el("th", { text: "passed" }), el("th", { text: "failed" }))),
      el("tbody", {}, r.by_check.map((c) => el("tr", {}, el("td", { text: c.check }), el("td", { text: c.passed }),
        el("td", {}, c.failed ? badge("bad", String(c.failed)) : badge("ok", "0")))))));
    if (r.failing.length) {
      card.append(el("h3", { text: "Failing checks" }), el("table", { class: "grid", id: "failing-checks" },
        el("thead", {}, el("tr", {}, el("th", { text: "check" }), el("th", { text: "subject" }), el("th", { text: "detail" }))),
        el("tbody", {}, r.failing.slice(0, 200).map((c) => el("tr", {}, el("td", { text: c.check }),
          el("td", {}, el("code", { text: c.subject })), el("td", { text: c.detail }))))));
    }
    return card;
  }

  // ───────────────────────────────────────── capacity charts ─────────────────────────────────────────
  function quantileBar(s) {
    const top = Math.max(s.p99 || 0, s.max || 0, s.capacity || 0) * 1.08 || 1;
    const x = (v) => (Math.max(0, v) / top) * 400;
    const parts = [svg("rect", { x: 0, y: 8, width: 400, height: 14, fill: "#eef2f6", rx: 3 })];
    if (s.p99 !== null) parts.push(svg("rect", { x: 0, y: 8, width: x(s.p99), height: 14, fill: "var(--p99)", rx: 3 },
      title("p99 " + fmtNum(s.p99) + " " + s.unit)));
    if (s.p95 !== null) parts.push(svg("rect", { x: 0, y: 8, width: x(s.p95), height: 14, fill: "var(--p95)", rx: 3 },
      title("p95 " + fmtNum(s.p95) + " " + s.unit)));
    if (s.p50 !== null) parts.push(svg("rect", { x: 0, y: 8, width: x(s.p50), height: 14, fill: "var(--p50)", rx: 3 },
      title("p50 " + fmtNum(s.p50) + " " + s.unit)));
    if (s.capacity !== null) parts.push(svg("line", { x1: x(s.capacity), x2: x(s.capacity), y1: 2, y2: 28,
      stroke: "var(--cap)", "stroke-width": 3, "vector-effect": "non-scaling-stroke" },
      title("sized shadow capacity " + fmtNum(s.capacity) + " " + s.unit)));
    return svg("svg", { class: "qbar", viewBox: "0 0 400 30", preserveAspectRatio: "none", width: "100%", height: 30,
      role: "img", "aria-label": s.service + " quantiles against capacity" }, parts);
  }

  function weekProfile(s) {
    const values = s.hour_of_week || [];
    const W = 300, H = 44;
    const peak = Math.max(...values.filter((v) => v !== null), s.p99 || 0) || 1;
    const capVisible = s.capacity !== null && s.capacity <= peak * 3;
    const top = Math.max(peak, capVisible ? s.capacity : 0) * 1.08;
    const y = (v) => H - 2 - (Math.max(0, v) / top) * (H - 6);
    const parts = [];
    for (let day = 1; day < 7; day++) parts.push(svg("line", { x1: day * W / 7, x2: day * W / 7, y1: 0, y2: H,
      stroke: "#e4e9ef" }));
    if (values.length) {
      const pts = values.map((v, i) => (i * W / 167).toFixed(1) + "," + y(v || 0).toFixed(1)).join(" ");
      parts.push(svg("polygon", { points: "0," + H + " " + pts + " " + W + "," + H, fill: "#dbe7fb" }));
      parts.push(svg("polyline", { points: pts, fill: "none", stroke: "var(--p50)", "stroke-width": 1.2 }));
    } else {
      parts.push(svg("text", { x: 6, y: 26, class: "small", fill: "#627d98", text: "no hour-of-week profile" }));
    }
    if (capVisible) parts.push(svg("line", { x1: 0, x2: W, y1: y(s.capacity), y2: y(s.capacity), stroke: "var(--cap)",
      "stroke-dasharray": "4 3", "stroke-width": 1.5 }, title("capacity " + fmtNum(s.capacity))));
    return svg("svg", { class: "week", viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
      "aria-label": s.service + " hour-of-week peak profile" }, title("hour-of-week peak (Mon→Sun, UTC)"), parts);
  }

  function capacityRows(services) {
    const needle = state.capacityFilter.toLowerCase();
    const matching = services.filter((s) => !needle || s.service.toLowerCase().includes(needle));
    const shown = state.capacityAll ? matching : matching.slice(0, CAPACITY_PAGE);
    const rows = shown.map((s) => el("div", { class: "capacity-row", "data-service": s.service },
      el("div", {}, el("div", { class: "name", title: s.service, text: s.service }),
        el("div", { class: "muted small", text: (s.metric || "no metric") + (s.recommended_instances !== null
          ? " · " + s.recommended_instances + " inst." : "") })),
      el("div", {}, quantileBar(s), el("div", { class: "muted small", text: "p50 " + fmtNum(s.p50) + " · p95 " +
        fmtNum(s.p95) + " · p99 " + fmtNum(s.p99) + " / capacity " + fmtNum(s.capacity) + " " + s.unit +
        (s.rule ? " — " + s.rule : "") })),
      weekProfile(s)));
    if (matching.length > shown.length) {
      rows.push(el("button", { type: "button", text: "show all " + matching.length + " services",
        onclick: () => { state.capacityAll = true; redrawCapacity(); } }));
    }
    return rows;
  }

  function redrawCapacity() {
    const list = document.getElementById("capacity-list");
    if (list && state.detail && state.detail.capacity) list.replaceChildren(...capacityRows(state.detail.capacity.services));
  }

  function capacityCard(d) {
    const card = el("section", { class: "card", id: "capacity" }, el("h2", { text: "Capacity per service" }));
    if (!d.capacity) { card.append(el("p", { class: "muted", text: "No valid capacity fingerprint yet." })); return card; }
    const win = d.capacity.window || {};
    card.append(el("div", { class: "toolbar" },
      el("input", { type: "search", placeholder: "filter services", "aria-label": "filter services",
        value: state.capacityFilter, oninput: (ev) => { state.capacityFilter = ev.target.value; redrawCapacity(); } }),
      el("span", { class: "muted small", text: "window " + fmtTime(win.start) + " → " + fmtTime(win.end) +
        " · sorted by p99 / capacity" })),
    el("div", { class: "legend" }, el("span", {}, el("i", { style: "background:var(--p50)" }), "p50"),
      el("span", {}, el("i", { style: "background:var(--p95)" }), "p95"),
      el("span", {}, el("i", { style: "background:var(--p99)" }), "p99"),
      el("span", {}, el("i", { style: "background:var(--cap)" }), "sized shadow capacity"),
      el("span", {}, "right: hour-of-week peak profile, Mon→Sun")),
    el("div", { id: "capacity-list" }, capacityRows(d.capacity.services)));
    return card;
  }

  // ───────────────────────────────────────── dependency graph ─────────────────────────────────────────
  function graphCard(d) {
    const card = el("section", { class: "card", id: "graph" }, el("h2", { text: "Dependency graph by launch tier" }));
    const g = d.graph;
    if (!g) { card.append(el("p", { class: "muted", text: "No valid dependency graph yet." })); return card; }
    const byId = new Map(g.nodes.map((n) => [n.id, n]));
    const NW = g.node_width, NH = 22;
    const parts = [svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 7,
      markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L8,4 L0,8 z", fill: "#7b93ad" })))];
    for (const t of g.tiers) parts.push(svg("text", { x: t.x, y: 16, class: "tier-label",
      text: t.label + " (" + t.size + ")" }));
    for (const e of g.edges) {
      const s = byId.get(e.source), t = byId.get(e.target);
      let path;
      if (s.x === t.x) {  // same column (a cycle): arc on the left side
        const bend = 30 + Math.min(60, Math.abs(s.y - t.y) / 4);
        path = "M" + s.x + "," + s.y + " C" + (s.x - bend) + "," + s.y + " " + (t.x - bend) + "," + t.y + " " + t.x +
          "," + t.y;
      } else {
        const mid = (e.x1 + e.x2) / 2;
        path = "M" + e.x1 + "," + e.y1 + " C" + mid + "," + e.y1 + " " + mid + "," + e.y2 + " " + e.x2 + "," + e.y2;
      }
      const cls = "edge" + (e.in_cycle ? " cycle" : "") + (e.confidence !== null && e.confidence < 0.5 ? " weak" : "");
      parts.push(svg("path", { d: path, class: cls, "marker-end": "url(#arrow)" },
        title(e.source + " → " + e.target + " (" + (e.kinds.join(", ") || "no evidence kind") + ", confidence " +
          e.confidence + ")")));
    }
    for (const n of g.nodes) {
      const label = n.id.length > 22 ? n.id.slice(0, 21) + "…" : n.id;
      parts.push(svg("g", { class: "node" + (n.cycle !== null ? " cycle" : "") + (n.kind && n.kind !== "service" ?
        " " + n.kind : ""), "data-node": n.id, transform: "translate(" + n.x + "," + (n.y - NH / 2) + ")" },
      svg("rect", { width: NW, height: NH, rx: 5 }), svg("text", { x: 8, y: 15, text: label }),
      title(n.id + " · tier " + n.tier + (n.kind ? " · " + n.kind : "") + (n.cycle !== null ? " · cycle #" + n.cycle : ""))));
    }
    const notes = [];
    if (g.cycles.length) notes.push(el("li", {}, el("span", { class: "chg", text: "cycles launched as one group: " }),
      g.cycles.map((c) => c.join(" ⇄ ")).join("; ")));
    if (g.dangling.length) notes.push(el("li", {}, el("span", { class: "rem", text: "dangling references: " }),
      g.dangling.slice(0, 20).map((x) => typeof x === "string" ? x : (x.source || "?") + " → " + (x.target || "?")).join("; ")));
    if (g.warnings.length) notes.push(el("li", { class: "muted" }, g.warnings.length + " warnings: " +
      g.warnings.slice(0, 5).join("; ") + (g.warnings.length > 5 ? " …" : "")));
    card.append(el("p", { class: "muted small", text: "Arrows point from caller to callee; tier 0 launches first. " +
      "Orange: members of a dependency cycle. Dashed: low-confidence edge." }),
    el("div", { class: "graph-wrap" }, svg("svg", { width: g.width, height: g.height, role: "img",
      "aria-label": "dependency graph", id: "graph-svg" }, parts)), notes.length ? el("ul", { class: "small" }, notes) : null);
    return card;
  }

  // ───────────────────────────────────────── blueprint history ─────────────────────────────────────────
  function diffView(v) {
    const diff = v.diff;
    if (!diff) {
      const s = v.summary || {};
      return el("span", { class: "muted small", text: Object.keys(s).length ? JSON.stringify(s).slice(0, 160) : "—" });
    }
    const changed = Object.entries(diff.changed);
    const head = [diff.added.length ? "+" + diff.added.length + " added" : null,
      diff.removed.length ? "−" + diff.removed.length + " removed" : null,
      changed.length ? changed.length + " changed" : null,
      diff.sections.length ? "sections: " + diff.sections.join(", ") : null].filter(Boolean).join(" · ") ||
      (v.version === 1 ? "first version" : "no service change");
    const items = [];
    for (const a of diff.added) items.push(el("li", { class: "add", text: "+ " + a }));
    for (const r of diff.removed) items.push(el("li", { class: "rem", text: "− " + r }));
    for (const [name, fields] of changed) items.push(el("li", { class: "chg" }, "~ " + name + ": ",
      el("code", { text: fields.map((f) => f.field + " " + JSON.stringify(f.old) + " → " + JSON.stringify(f.new)).join("; ") })));
    if (!items.length) return el("span", { class: "small", text: head });
    return el("details", { class: "diff" }, el("summary", { class: "small", text: head }), el("ul", { class: "small" }, items));
  }

  function historyCard(d) {
    const card = el("section", { class: "card", id: "history" }, el("h2", { text: "Blueprint history" }));
    if (!d.blueprint_history.length) { card.append(el("p", { class: "muted", text: "No blueprint version yet." })); return card; }
    card.append(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ["version", "valid from", "valid to",
      "content hash", "changes"].map((h) => el("th", { text: h })))),
    el("tbody", {}, d.blueprint_history.map((v) => el("tr", { "data-version": v.version },
      el("td", {}, el("strong", { text: "v" + v.version }), v.is_current ? [" ", badge("ok", "current")] : null),
      el("td", { text: fmtTime(v.valid_from) }), el("td", { text: v.valid_to ? fmtTime(v.valid_to) : "—" }),
      el("td", {}, el("code", { text: v.content_hash.slice(0, 12) })), el("td", {}, diffView(v)))))));
    return card;
  }

  // ───────────────────────────────────────── failover history ─────────────────────────────────────────
  function timeline(f) {
    const steps = f.steps.filter((s) => s.offset_seconds !== null);
    if (!steps.length) return el("span", { class: "muted small", text: "no step timings recorded" });
    const total = Math.max(...steps.map((s) => s.offset_seconds + (s.duration_seconds || 0)), 0.001);
    const LW = 170, BW = 460, RH = 18;
    const color = (st) => ({ success: "#16a34a", succeeded: "#16a34a", done: "#16a34a", failed: "#dc2626",
      running: "#2563eb", skipped: "#94a3b8" }[st] || "#64748b");
    const parts = [];
    steps.forEach((s, i) => {
      const x = LW + (s.offset_seconds / total) * BW;
      const w = Math.max(2, ((s.duration_seconds || 0) / total) * BW);
      parts.push(svg("text", { x: 0, y: i * RH + 13, "font-size": 11, fill: "#1f2933", text: s.name.slice(0, 26) }));
      parts.push(svg("rect", { x, y: i * RH + 3, width: w, height: RH - 6, rx: 2, fill: color(s.state) },
        title(s.name + ": " + (s.state || "?") + ", +" + s.offset_seconds.toFixed(1) + "s, " +
          (s.duration_seconds !== null ? s.duration_seconds.toFixed(1) + "s" : "unfinished") + (s.detail ? " — " + s.detail : ""))));
      parts.push(svg("text", { x: Math.min(x + w + 4, LW + BW + 4), y: i * RH + 13, "font-size": 10, fill: "#627d98",
        text: s.duration_seconds !== null ? s.duration_seconds.toFixed(1) + "s" : "…" }));
    });
    return svg("svg", { width: LW + BW + 50, height: steps.length * RH + 4, class: "timeline", role: "img",
      "aria-label": "step timeline of " + f.failover_id }, parts);
  }

  function failoverCard(d) {
    const card = el("section", { class: "card", id: "failovers" }, el("h2", { text: "Failover history" }));
    if (!d.failovers.length) { card.append(el("p", { class: "muted", text: "No failover has run for this region." })); return card; }
    const rows = [];
    for (const f of d.failovers) {
      rows.push(el("tr", { "data-failover": f.failover_id, "data-mode": f.mode, "data-outcome": f.outcome },
        el("td", { text: fmtTime(f.started_at) }), el("td", {}, f.kind === "failback" ? badge("none", "failback") : badge(f.mode === "live" ? "bad" : f.mode === "drill" ?
          "warn" : "none", f.mode)), el("td", { text: f.trigger + (f.triggered_by ? " by " + f.triggered_by : "") }),
        el("td", {}, outcomeBadge(f.outcome)), el("td", { text: f.blueprint_version ? "v" + f.blueprint_version : "—" }),
        el("td", { text: f.recovery_seconds !== null ? f.recovery_seconds.toFixed(1) + " s" : "—" }),
        el("td", { text: f.duration_seconds !== null ? f.duration_seconds.toFixed(1) + " s" : "—" })));
      rows.push(el("tr", { class: "timeline-row" }, el("td", { colspan: 7 }, timeline(f),
        f.error ? el("div", { class: "error small", text: f.error }) : null)));
    }
    card.append(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ["started", "mode", "trigger", "outcome",
      "blueprint", "recovery (RTO)", "duration"].map((h) => el("th", { text: h })))), el("tbody", {}, rows)));
    return card;
  }

  // ───────────────────────────────────────── routing ─────────────────────────────────────────
  function route() {
    const region = decodeURIComponent(location.hash.replace(/^#/, ""));
    if (region) loadRegion(region);
  }
  window.addEventListener("hashchange", route);
  loadRegions().then(() => {
    if (!location.hash && state.regions.length) location.hash = encodeURIComponent(state.regions[0].region);
    else route();
  });
})();
