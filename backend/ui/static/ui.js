// The dashboard's only script: live status and progress over Server-Sent Events (cookie-authenticated,
// same origin). Pages work without it; it only saves reloads.
"use strict";

(function () {
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const table = document.querySelector("[data-live-table]");
  const liveIds = new Set(Array.from(document.querySelectorAll("[data-live][data-job]"), (el) => el.dataset.job));
  const follow = table ? table.dataset.follow : "";
  const batchBox = document.querySelector("[data-batch][data-live]");
  let batch = batchBox ? batchBox.dataset.batch : null; // a batch's page: its counts follow too
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
      if (status) {
        status.replaceChildren(badge(job.status));
        if (holder.tagName === "TR" && job.status === "blocked" && (job.depends_on || []).length) {
          status.append(waits(job.depends_on));
        }
      }
      setProgress(holder.querySelector(".progress"), job.progress);
      const attempts = holder.querySelector(".attempts");
      if (attempts) attempts.textContent = job.attempts + "/" + job.max_attempts;
      if (TERMINAL.has(job.status) && holder.hasAttribute("data-reload-on-end")) window.location.reload();
    });
    if (TERMINAL.has(job.status)) liveIds.delete(job.id);
    if (!liveIds.size && !follow && !batch && source) { source.close(); source = null; }
  }

  function counted(view) {
    let total = 0;
    let ended = 0;
    for (const [status, n] of Object.entries(view.counts)) {
      total += n;
      if (TERMINAL.has(status)) ended += n;
    }
    document.querySelectorAll("[data-count]").forEach((cell) => {
      cell.textContent = String(view.counts[cell.dataset.count] || 0);
    });
    const bar = batchBox.querySelector("progress");
    if (bar) { bar.max = total || 1; bar.value = ended; bar.textContent = ended + "/" + total; }
    const label = batchBox.querySelector(".ended");
    if (label) label.textContent = ended + "/" + total + " ended";
    if (view.done) {
      batch = null;
      window.location.reload(); // the finished batch as the server shows it (no cancel button)
    }
  }

  function shortId(id) {
    return id.slice(0, 8) + "…";
  }

  function codeLink(href, label, id, attrs) {
    const link = el("a", Object.assign({ href: href }, attrs || {}), label);
    link.append(el("code", {}, shortId(id)));
    return link;
  }

  // A blocked job's first parents, as the server renders them (`waits_for` in _macros.html).
  function waits(parents) {
    const box = el("div", { class: "waits" }, "after ");
    parents.slice(0, 3).forEach((id, i) => {
      if (i) box.append(", ");
      box.append(codeLink("/ui/jobs/" + id, "", id));
    });
    if (parents.length > 3) box.append(" and " + (parents.length - 3) + " more");
    return box;
  }

  function row(job) {
    const tr = el("tr", { "data-job": job.id });
    const name = el("td");
    name.append(el("a", { href: "/ui/jobs/" + job.id }, job.name || shortId(job.id)));
    if (job.name) name.append(el("br"), el("code", { class: "muted" }, shortId(job.id)));
    if (job.batch_id) {
      name.append(el("br"), codeLink("/ui/batches/" + job.batch_id, "batch ", job.batch_id, { class: "batch-link" }));
    }
    const status = el("td", { class: "status" });
    status.append(badge(job.status));
    if (job.status === "blocked" && (job.depends_on || []).length) status.append(waits(job.depends_on));
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
    if (batch) params.set("batch", batch);
    for (const id of Array.from(liveIds).slice(0, 100)) params.append("id", id);
    return "/ui/live?" + params.toString();
  }

  function connect() {
    if (!liveIds.size && !follow && !batch) return;
    source = new EventSource(url());
    source.addEventListener("job", (e) => update(JSON.parse(e.data)));
    if (batch) source.addEventListener("batch", (e) => counted(JSON.parse(e.data)));
    if (follow) source.addEventListener("new", (e) => arrived(JSON.parse(e.data)));
    source.onerror = () => {
      // The stream ended (its lifetime is capped) or the network blinked: reconnect with what we show now.
      if (source) source.close();
      source = null;
      window.setTimeout(connect, 2000);
    };
  }

  if (table || liveIds.size || batch) connect();
})();
