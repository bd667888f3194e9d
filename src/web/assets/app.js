// edgemon's status page: fetches the JSON API and draws the page, the
// charts as SVG. Host-provided text only ever goes in with textContent or
// setAttribute, never as markup. No libraries, nothing from the internet.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 240, height: 56, pad: 2 };
const SERIES = ["cpu", "memory_percent", "swap_percent"];
const CLASSES = { cpu: "cpu", memory_percent: "memory", swap_percent: "swap" };
let charts = new Map(); // host name -> the chart cell's current content

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

async function fetchJson(url) {
  const reply = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new Error(`${url}: ${reply.status} ${body.error || reply.statusText}`);
  return body;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  seconds = Math.max(0, Math.round(seconds));
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const parts = [];
  for (const [unit, size] of units) {
    if (seconds >= size || (unit === "s" && parts.length === 0)) {
      parts.push(Math.floor(seconds / size) + unit);
      seconds %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

function ago(at, now) {
  return at === null || at === undefined ? "never" : `${duration((now - at) / 1000)} ago`;
}

function clock(at, withDay) {
  const d = new Date(at);
  const pad = (n) => String(n).padStart(2, "0");
  const day = withDay ? `${d.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ` : "";
  return `${day}${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function count(n) {
  return Number(n).toLocaleString();
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(1)}%`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fact(id, label, value, note, level) {
  return el("div", { class: `fact ${level || ""}`, id },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, value),
    note ? el("div", { class: "note", title: note }, note) : null);
}

function renderStatus(s) {
  document.getElementById("appliance").textContent = s.appliance;
  document.title = `edgemon · ${s.appliance}`;
  const b = s.buffer, sync = s.sync, out = s.outbox, h = s.hosts;
  const summary = document.getElementById("summary");
  const pills = [
    el("li", { class: "pill" }, `${h.total} hosts`),
    el("li", { class: "pill up" }, `${h.up} up`),
    h.down ? el("li", { class: "pill down" }, `${h.down} down`) : null,
    h.stale ? el("li", { class: "pill stale" }, `${h.stale} stale`) : null,
    h.waiting ? el("li", { class: "pill" }, `${h.waiting} waiting`) : null,
    el("li", { class: h.alerts ? "pill firing" : "pill" }, `${h.alerts} alerts firing`),
  ];
  summary.replaceChildren(...pills.filter((pill) => pill !== null));
  const oldest = b.oldest_unsynced_age_s;
  const lagging = oldest !== null && oldest * 1000 > 10 * s.interval_ms + 120000;
  document.getElementById("buffer").replaceChildren(
    fact("buffer-depth", "Buffer depth: unsynced", count(b.unsynced),
      `of ${count(b.samples)} samples held · ${bytes(b.size_bytes)}`),
    fact("buffer-oldest", "Oldest unsynced", oldest === null ? "none" : duration(oldest),
      oldest === null ? "everything is in MySQL" : "waiting for the central database",
      lagging ? "warn" : ""),
    fact("sync-last", "Last sync", ago(sync.last_sync_at, s.now),
      sync.last_error || (sync.last_sync_at ? "no error" : "not synced yet"),
      sync.last_error ? "bad" : ""),
    fact("outbox", "Outbox", `${out.pending} pending`,
      `${out.sent} sent · ${out.failed} failed` + (out.last_error ? ` · ${out.last_error}` : ""),
      out.failed || out.last_error ? "bad" : ""),
    fact("loss", "Time to first loss",
      b.time_to_first_loss_s === null || b.time_to_first_loss_s === undefined
        ? "–" : duration(b.time_to_first_loss_s),
      "if nothing synced from now on", b.time_to_first_loss_s !== null && b.time_to_first_loss_s < 86400 ? "warn" : ""),
    fact("retention", "Shed or refused", `${count(b.dropped)} dropped`,
      b.warning || `${count(b.quarantined)} quarantined`, b.warning || b.dropped ? "warn" : ""),
    ...(b.damaged ? [fact("damaged", "Damaged buffer replaced", `${count(b.damaged.salvaged_samples)} salvaged`,
      `set aside as ${b.damaged.set_aside}: ${b.damaged.error}`, "bad")] : []));
  document.getElementById("updated").textContent =
    `updated ${new Date(s.now).toLocaleTimeString()} · every ${duration(refreshMs(s) / 1000)}`;
}

function hostRow(host, now) {
  const alerts = el("td", { class: "alerts" });
  for (const a of host.alerts) {
    const since = a.since ? ` for ${duration((now - a.since) / 1000)}` : "";
    alerts.append(el("span", { class: `alert ${a.state}`, title: `${a.state}${since}` }, a.rule));
  }
  for (const k of host.acks || []) {
    alerts.append(el("span", { class: "ack", title: k.comment || "" },
      `${k.rule} acked by ${k.by} ${ago(k.at, now)}`));
  }
  for (const s of host.silences || []) {
    const rules = s.rules.length ? s.rules.join(",") : "all";
    alerts.append(el("span", { class: "silence", title: `${s.comment} (by ${s.created_by})` },
      `silenced ${rules} until ${new Date(s.ends_at).toLocaleString()}`));
  }
  const error = el("td", { class: "error" });
  if (host.last_error_class) {
    const old = host.consecutive_failures === 0;
    error.append(
      el("span", { class: old ? "class old" : "class" }, host.last_error_class),
      el("span", { class: old ? "message old" : "message", title: host.last_error || "" },
        (host.last_error || "") + (old ? ` (${ago(host.last_error_at, now)})` : "")));
  }
  const chart = el("td", { class: "chart" });
  const existing = charts.get(host.name);
  if (existing) chart.append(existing);
  const failing = host.consecutive_failures > 0
    ? el("div", { class: "failures" }, `${host.consecutive_failures} failed`) : null;
  return el("tr", { class: `host ${host.state}`, "data-host": host.name },
    el("th", { scope: "row", class: "name" }, host.name, el("div", { class: "address" }, host.address)),
    el("td", {}, el("span", { class: `state ${host.state}` }, host.state), failing),
    el("td", { class: "when" }, ago(host.last_sample_at, now)),
    el("td", { class: "num cpu" }, percent(host.cpu)),
    el("td", { class: "num memory" }, percent(host.memory_percent)),
    el("td", { class: "num swap" }, percent(host.swap_percent)),
    el("td", { class: "num" }, duration(host.uptime_s)),
    alerts, error, chart);
}

function drawChart(series, now) {
  const { width, height, pad } = CHART;
  const points = series.points;
  const root = svg("svg", {
    class: "spark", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "data-points": points.length,
  });
  for (const level of [0, 50, 100]) {
    const y = pad + (height - 2 * pad) * (1 - level / 100);
    root.append(svg("line", { class: "grid", x1: 0, x2: width, y1: y, y2: y }));
  }
  const title = svg("title", {});
  root.append(title);
  if (points.length === 0) {
    title.textContent = "no samples in the last 24 h";
    const text = svg("text", { class: "empty", x: width / 2, y: height / 2 + 4 });
    text.textContent = "no samples yet";
    root.append(text);
    return root;
  }
  const t0 = points[0].at, t1 = Math.max(now, points[points.length - 1].at);
  const span = Math.max(t1 - t0, 1);
  const x = (at) => pad + (width - 2 * pad) * ((at - t0) / span);
  const y = (v) => pad + (height - 2 * pad) * (1 - Math.min(Math.max(v, 0), 100) / 100);
  // A gap of more than three steps (a host that was down) breaks the line.
  const step = Math.max(series.bucket_ms, series.interval_ms);
  for (const key of SERIES) {
    let d = "";
    points.forEach((p, i) => {
      const broken = i === 0 || p.at - points[i - 1].at > 3 * step;
      d += `${broken ? "M" : "L"}${x(p.at).toFixed(1)},${y(p[key]).toFixed(1)}`;
    });
    root.append(svg("path", { class: `line ${CLASSES[key]}`, d }));
    const last = points[points.length - 1];
    root.append(svg("circle", { class: `dot ${CLASSES[key]}`, cx: x(last.at), cy: y(last[key]), r: 2 }));
  }
  title.textContent = `${series.samples} samples since ${clock(t0)}`;
  const summary = `${count(series.samples)} samples`;
  const readout = el("span", { class: "readout" }, summary);
  const cursor = svg("line", { class: "cursor", x1: -1, x2: -1, y1: 0, y2: height });
  root.append(cursor);
  // Hovering shows the values of the nearest point.
  root.addEventListener("mousemove", (event) => {
    const box = root.getBoundingClientRect();
    const at = t0 + ((event.clientX - box.left) / box.width * width - pad) / (width - 2 * pad) * span;
    let best = points[0];
    for (const p of points) if (Math.abs(p.at - at) < Math.abs(best.at - at)) best = p;
    cursor.setAttribute("x1", x(best.at));
    cursor.setAttribute("x2", x(best.at));
    readout.textContent = `${clock(best.at)} cpu ${percent(best.cpu)} mem ${percent(best.memory_percent)} ` +
      `swap ${percent(best.swap_percent)}`;
  });
  root.addEventListener("mouseleave", () => {
    cursor.setAttribute("x1", -1);
    cursor.setAttribute("x2", -1);
    readout.textContent = summary;
  });
  return el("div", { class: "chart-wrap" }, root,
    el("div", { class: "axis" }, el("span", {}, clock(t0, now - t0 > 12 * 3600 * 1000)), readout,
      el("span", {}, "now")));
}

// Charts are fetched only for rows on (or near) the screen, so a fleet of a
// thousand hosts costs a screenful of requests per refresh, not a thousand.
const visible = new Set();
let lastNow = 0;
const observer = new IntersectionObserver((entries) => {
  const appeared = [];
  for (const entry of entries) {
    const name = entry.target.dataset.host;
    if (entry.isIntersecting) {
      if (!visible.has(name) && !charts.has(name)) appeared.push({ name });
      visible.add(name);
    } else {
      visible.delete(name);
    }
  }
  if (appeared.length) refreshCharts(appeared, lastNow);
}, { rootMargin: "300px 0px" });

async function refreshCharts(hosts, now) {
  const queue = hosts.map((h) => h.name).filter((name) => visible.has(name));
  const worker = async () => {
    while (queue.length) {
      const name = queue.shift();
      try {
        const series = await fetchJson(`/api/hosts/${encodeURIComponent(name)}/samples`);
        const chart = drawChart(series, now);
        charts.set(name, chart);
        for (const row of document.querySelectorAll("#hosts tbody tr")) {
          if (row.dataset.host === name) row.querySelector("td.chart").replaceChildren(chart);
        }
      } catch (error) {
        showBanner(`chart of ${name}: ${error.message}`);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

// Hosts that need the operator first: down, stale, alerting, then the rest.
function severity(host) {
  if (host.state === "down") return 0;
  if (host.state === "stale") return 1;
  if (host.alerts.length) return 2;
  return host.state === "waiting" ? 3 : 4;
}

function applyFilter() {
  const text = document.getElementById("filter").value.trim().toLowerCase();
  for (const row of document.querySelectorAll("#hosts tbody tr")) {
    row.hidden = text !== "" && !row.dataset.host.toLowerCase().includes(text);
  }
}

function showBanner(text) {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.hidden = !text;
}

function refreshMs(status) {
  return Math.min(Math.max(status.interval_ms, 2000), 60000);
}

async function refresh() {
  let next = 10000;
  try {
    const [status, hosts] = await Promise.all([fetchJson("/api/status"), fetchJson("/api/hosts")]);
    showBanner("");
    renderStatus(status);
    const known = new Set(hosts.hosts.map((h) => h.name));
    for (const name of charts.keys()) if (!known.has(name)) charts.delete(name);
    const ordered = [...hosts.hosts].sort((a, b) => severity(a) - severity(b) || (a.name < b.name ? -1 : 1));
    document.querySelector("#hosts tbody").replaceChildren(...ordered.map((h) => hostRow(h, hosts.now)));
    applyFilter();
    lastNow = hosts.now;
    observer.disconnect();
    for (const row of document.querySelectorAll("#hosts tbody tr")) observer.observe(row);
    next = refreshMs(status);
    await refreshCharts(hosts.hosts, hosts.now);
  } catch (error) {
    showBanner(`Cannot read edgemon's API: ${error.message}. Retrying.`);
  }
  setTimeout(refresh, next);
}

document.getElementById("filter").addEventListener("input", applyFilter);
refresh();
