// edgemon's host page (/host?name=NAME): the host's figures and one table per
// metric family, drawn from the specs the API sends (columns, units, docs), with
// a 24 h chart per member. Host-provided text only ever goes in with
// textContent or setAttribute, never as markup. Helpers are in common.js.
"use strict";

const HOST = new URLSearchParams(location.search).get("name") || "";
const API = `/api/hosts/${encodeURIComponent(HOST)}`;
const SMALL = { width: 200, height: 36, pad: 2 };
const WIDE = { width: 720, height: 90, pad: 3 };
const CHART_EVERY_MS = 60000;
let chartsAt = 0;
const memberCharts = new Map(); // "family/member" -> chart node

// What the page shows first of a family, and charts; a family not listed here
// shows every column of its spec and no chart.
const VIEW = {
  filesystems: {
    columns: ["used_percent", "used", "avail", "size", "inodes_used_percent", "full_in_s", "fstype", "readonly", "hanging"],
    chart: { keys: ["used_percent"], max: 100, title: "used %" },
  },
  interfaces: {
    columns: ["oper", "speed", "rx_bytes_per_s", "tx_bytes_per_s", "errors_per_s", "error_ratio_percent", "rx_drops_per_s", "tx_drops_per_s"],
    chart: { keys: ["rx_bytes_per_s", "tx_bytes_per_s"], title: "received / sent per second" },
  },
  devices: {
    columns: ["util_percent", "read_bytes_per_s", "write_bytes_per_s", "reads_per_s", "writes_per_s"],
    chart: { keys: ["util_percent"], max: 100, title: "utilisation %" },
  },
  processes: { columns: ["count"] },
  units: { columns: ["sub", "result"] },
};
const EXTRA_COLUMNS = {
  full_in_s: { name: "full_in_s", kind: "f64", unit: "s", doc: "the filling-up alert's prediction, else an estimate: least squares over 12 h of available space" },
};
const LABELS = {
  used_percent: "used %", used: "used", avail: "free", size: "size", inodes_used_percent: "inodes %",
  full_in_s: "full in", fstype: "type", readonly: "ro", oper: "state", speed: "speed",
  rx_bytes_per_s: "rx", tx_bytes_per_s: "tx", errors_per_s: "errors", error_ratio_percent: "error ratio",
  rx_drops_per_s: "rx drops", tx_drops_per_s: "tx drops", util_percent: "util %", read_bytes_per_s: "read",
  write_bytes_per_s: "write", reads_per_s: "reads", writes_per_s: "writes", count: "running",
};

function formatValue(value, column) {
  if (value === null || value === undefined) return "–";
  if (column.kind === "bool") return value ? column.name.replace(/_/g, " ") : "";
  if (column.kind === "text") return String(value);
  switch (column.unit) {
    case "bytes": return bytes(value);
    case "bytes/s": return `${bytes(value)}/s`;
    case "percent": return percent(value);
    case "s": return value > 30 * 86400 ? "> 30d" : duration(value);
    case "count": return count(Math.round(value));
    case "Mbit/s": return `${count(value)} Mbit/s`;
    case "count/s": return `${value < 10 ? value.toFixed(2) : count(Math.round(value))}/s`;
    case "": return String(value);
    default: return `${value < 10 ? value.toFixed(2) : count(Math.round(value))} ${column.unit}`;
  }
}

// Columns of a family in the page's order: the view's first, then the rest of the spec's.
function familyColumns(family) {
  const byName = new Map(family.columns.map((c) => [c.name, c]));
  const view = VIEW[family.name];
  if (!view) return family.columns;
  return view.columns.map((name) => byName.get(name) || EXTRA_COLUMNS[name]).filter(Boolean);
}

function rowLevel(family, m) {
  if (family.name === "filesystems") {
    if (m.hanging || m.used_percent >= 90 || m.inodes_used_percent >= 90) return "bad";
    if (m.readonly || m.used_percent >= 80 || m.inodes_used_percent >= 80) return "warn";
  }
  if (family.name === "interfaces" && (m.oper === "down" || m.oper === "lowerlayerdown")) return "bad";
  if (family.name === "processes" && m.count === 0) return "bad";
  if (family.name === "units") return "bad";
  return "";
}

function lineChart(series, keys, opts, size, now) {
  const { width, height, pad } = size;
  const points = series.points;
  const root = svg("svg", {
    class: "spark", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "data-points": points.length,
  });
  const title = svg("title", {});
  root.append(title);
  const values = points.flatMap((p) => keys.map((k) => p[k])).filter((v) => v !== null && v !== undefined);
  if (values.length === 0) {
    title.textContent = "no samples in the last 24 h";
    const text = svg("text", { class: "empty", x: width / 2, y: height / 2 + 4 });
    text.textContent = "no samples yet";
    root.append(text);
    return root;
  }
  const top = opts.max || Math.max(...values, 1) * 1.1;
  for (const level of [0, 0.5, 1]) {
    const y = pad + (height - 2 * pad) * (1 - level);
    root.append(svg("line", { class: "grid", x1: 0, x2: width, y1: y, y2: y }));
  }
  // From the first point (at most 24 h ago) to now, as the hosts page's charts.
  const t0 = points[0].at, t1 = Math.max(now, points[points.length - 1].at);
  const span = Math.max(t1 - t0, 1);
  const x = (at) => pad + (width - 2 * pad) * ((at - t0) / span);
  const y = (v) => pad + (height - 2 * pad) * (1 - Math.min(Math.max(v, 0), top) / top);
  const step = Math.max(series.bucket_ms, series.interval_ms);
  keys.forEach((key, k) => {
    let d = "";
    let previous = null;
    for (const p of points) {
      if (p[key] === null || p[key] === undefined) { previous = null; continue; }
      const broken = previous === null || p.at - previous.at > 3 * step;
      d += `${broken ? "M" : "L"}${x(p.at).toFixed(1)},${y(p[key]).toFixed(1)}`;
      previous = p;
    }
    root.append(svg("path", { class: `line series-${k}`, d }));
  });
  title.textContent = `${opts.title || keys.join(", ")}: ${series.samples} samples since ${clock(t0)}`;
  return root;
}

async function memberChart(family, member, now) {
  const view = VIEW[family.name];
  const query = family.singleton ? "" : `?member=${encodeURIComponent(member)}`;
  const series = await fetchJson(`${API}/families/${encodeURIComponent(family.name)}${query}`);
  return lineChart(series, view.chart.keys, view.chart, SMALL, now);
}

function familyPanel(family, now, chartJobs) {
  const title = el("h2", {}, family.name);
  const panel = el("section", { class: "panel family", id: `family-${family.name}`, "data-family": family.name },
    el("div", { class: "panel-head" }, title, el("span", { class: "doc" }, family.doc)));
  if (!family.measured) {
    panel.append(el("p", { class: "muted not-measured" }, "not measured by this host's agent"));
    return panel;
  }
  const columns = familyColumns(family);
  const view = VIEW[family.name];
  if (family.singleton) {
    const m = family.members[0] || {};
    panel.append(el("div", { class: "facts" }, ...columns.map((c) =>
      fact(null, c.name.replace(/_/g, " "), formatValue(m[c.name], c), c.doc))));
  } else if (family.members.length === 0) {
    panel.append(el("p", { class: "muted none" }, family.name === "units" ? "no failed unit" : "none"));
  } else {
    const head = el("tr", {}, el("th", {}, family.key),
      ...columns.map((c) => el("th", { class: c.kind === "text" || c.kind === "bool" ? "" : "num", title: c.doc },
        LABELS[c.name] || c.name.replace(/_/g, " "))),
      view && view.chart ? el("th", {}, `last 24 h · ${view.chart.title}`) : null);
    const rows = family.members.map((m) => {
      const chartCell = view && view.chart ? el("td", { class: "chart" }) : null;
      if (chartCell) {
        const id = `${family.name}/${m.key}`;
        const existing = memberCharts.get(id);
        if (existing) chartCell.append(existing);
        chartJobs.push({ id, family, member: m.key, cell: chartCell });
      }
      return el("tr", { class: `member ${rowLevel(family, m)}`, "data-member": m.key },
        el("th", { scope: "row", class: "name" }, m.key),
        ...columns.map((c) => {
          const text = formatValue(m[c.name], c);
          const cls = c.kind === "bool" ? (m[c.name] ? "flag on" : "flag") : c.kind === "text" ? "" : "num";
          const source = c.name === "full_in_s" && m.full_in_source
            ? (m.full_in_source === "alert" ? "the filling-up alert's prediction" : "estimate from 12 h of samples")
            : null;
          return el("td", { class: `${cls} col-${c.name}`, title: source }, text);
        }),
        chartCell);
    });
    panel.append(el("div", { class: "table-wrap" },
      el("table", { class: "members" }, el("thead", {}, head), el("tbody", {}, ...rows))));
  }
  if (family.cut || family.refused) {
    panel.append(el("p", { class: "shortfall" },
      `${family.cut} ${family.member} not reported (the agent's cap), ${family.refused} refused as invalid`));
  }
  return panel;
}

function renderOverview(host, now) {
  document.getElementById("host-name").textContent = host ? host.name : HOST;
  document.title = `edgemon · ${HOST}`;
  const state = document.getElementById("host-state");
  state.textContent = host ? host.state : "unknown";
  state.className = `state ${host ? host.state : ""}`;
  if (!host) return;
  document.getElementById("overview").replaceChildren(
    fact("last-sample", "Last sample", ago(host.last_sample_at, now), host.address),
    fact("cpu", "CPU", percent(host.cpu)),
    fact("memory", "Memory", percent(host.memory_percent)),
    fact("swap", "Swap", percent(host.swap_percent)),
    fact("uptime", "Uptime", duration(host.uptime_s)),
    fact("last-error", "Last error", host.last_error_class || "none", host.last_error || "",
      host.consecutive_failures > 0 ? "bad" : ""));
}

async function runCharts(jobs, now) {
  const worker = async () => {
    while (jobs.length) {
      const job = jobs.shift();
      try {
        const chart = await memberChart(job.family, job.member, now);
        memberCharts.set(job.id, chart);
        for (const cell of document.querySelectorAll(`[data-family="${job.family.name}"] tr.member`)) {
          if (cell.dataset.member === job.member) cell.querySelector("td.chart").replaceChildren(chart);
        }
      } catch (error) {
        showBanner(`chart of ${job.id}: ${error.message}`);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

async function refresh() {
  let next = 10000;
  try {
    const [hosts, families] = await Promise.all([fetchJson("/api/hosts"), fetchJson(`${API}/families`)]);
    showBanner("");
    const host = hosts.hosts.find((h) => h.name === HOST);
    renderOverview(host, families.now);
    const jobs = [];
    document.getElementById("families").replaceChildren(
      ...families.families.map((f) => familyPanel(f, families.now, jobs)));
    document.getElementById("updated").textContent = families.at
      ? `sample of ${new Date(families.at).toLocaleTimeString()}` : "no sample with families yet";
    next = Math.min(Math.max(families.interval_ms, 2000), 60000);
    if (families.now - chartsAt >= CHART_EVERY_MS || memberCharts.size === 0) {
      chartsAt = families.now;
      const series = await fetchJson(`${API}/samples`);
      const chart = lineChart(series, ["cpu", "memory_percent", "swap_percent"], { max: 100, title: "CPU, memory, swap %" }, WIDE, families.now);
      chart.classList.add("seed");
      document.getElementById("overview-chart").replaceChildren(chart);
      await runCharts(jobs, families.now);
    }
  } catch (error) {
    showBanner(`Cannot read edgemon's API: ${error.message}. Retrying.`);
  }
  setTimeout(refresh, next);
}

document.getElementById("api-links").append(
  el("a", { href: `${API}/families` }, `${API}/families`));
refresh();
