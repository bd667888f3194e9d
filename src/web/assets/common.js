// Helpers shared by edgemon's pages (the hosts page, app.js, and the host
// page, host.js): DOM building, fetching the API, and formatting. Host text
// only ever goes in with textContent or setAttribute, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
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

function showBanner(text) {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.hidden = !text;
}

