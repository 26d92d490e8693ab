// The dashboard's only script: live status and progress over Server-Sent Events (cookie-authenticated,
// same origin). Pages work without it; it only saves reloads.
"use strict";

(function () {
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const table = document.querySelector("[data-live-table]");
  const liveIds = new Set(Array.from(document.querySelectorAll("[data-live][data-job]"), (el) => el.dataset.job));
  const follow = table ? table.dataset.follow : "";
  let source = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function badge(status) {
    return el("span", { class: "badge st-" + status }, status);
  }

  function setProgress(cell, progress) {
    if (!cell) return;
    const bar = cell.querySelector("progress");
    const pct = cell.querySelector(".pct");
    const value = Math.round(progress * 100);
    if (bar) { bar.value = progress; bar.textContent = value + "%"; }
    if (pct) pct.textContent = value + "%";
  }

  function update(job) {
    document.querySelectorAll('[data-job="' + job.id + '"]').forEach((holder) => {
      const status = holder.querySelector(".status");
      if (status) { status.replaceChildren(badge(job.status)); }
      setProgress(holder.querySelector(".progress"), job.progress);
      const attempts = holder.querySelector(".attempts");
      if (attempts) attempts.textContent = job.attempts + "/" + job.max_attempts;
      if (TERMINAL.has(job.status) && holder.hasAttribute("data-reload-on-end")) window.location.reload();
    });
    if (TERMINAL.has(job.status)) liveIds.delete(job.id);
    if (!liveIds.size && !follow && source) { source.close(); source = null; }
  }

  function row(job) {
    const tr = el("tr", { "data-job": job.id });
    const name = el("td");
    name.append(el("a", { href: "/ui/jobs/" + job.id }, job.name || job.id.slice(0, 8) + "…"));
    const status = el("td", { class: "status" });
    status.append(badge(job.status));
    const progress = el("td", { class: "progress" });
    const bar = el("progress", { class: "prog", max: "1", "aria-label": "Progress of " + (job.name || job.id) });
    progress.append(bar, el("span", { class: "pct" }));
    setProgress(progress, job.progress);
    const tags = el("td");
    for (const tag of job.tags || []) {
      tags.append(el("a", { class: "tag", href: "/ui/jobs?tags=" + encodeURIComponent(tag) }, tag), " ");
    }
    const created = el("td");
    created.append(el("time", { datetime: job.created_at }, job.created_at.replace("T", " ").slice(0, 19)));
    tr.append(name, el("td", {}, job.type), status, progress, tags, created,
      el("td", { class: "attempts" }, job.attempts + "/" + job.max_attempts));
    return tr;
  }

  function arrived(data) {
    const body = table.querySelector("tbody");
    const empty = body.querySelector("td[colspan]");
    if (empty) empty.parentElement.remove();
    if (!document.querySelector('[data-job="' + data.job.id + '"]')) body.prepend(row(data.job));
    liveIds.add(data.job.id);
    since = data.cursor;
  }

  let since = null;
  function url() {
    const params = new URLSearchParams(follow || "");
    if (since) params.set("since", since);
    for (const id of Array.from(liveIds).slice(0, 100)) params.append("id", id);
    return "/ui/live?" + params.toString();
  }

  function connect() {
    if (!liveIds.size && !follow) return;
    source = new EventSource(url());
    source.addEventListener("job", (e) => update(JSON.parse(e.data)));
    if (follow) source.addEventListener("new", (e) => arrived(JSON.parse(e.data)));
    source.onerror = () => {
      // The stream ended (its lifetime is capped) or the network blinked: reconnect with what we show now.
      if (source) source.close();
      source = null;
      window.setTimeout(connect, 2000);
    };
  }

  if (table || liveIds.size) connect();
})();
