// The operators' dashboard: renders what /dashboard/api/stream sends
// (server-sent events), and a request's detail from
// /dashboard/api/verifications/<id>. Plain DOM, no framework, no build step.
// Every value is written with textContent, never as HTML.
"use strict";

const IN_PROGRESS = new Set(["queued", "calling", "in_call", "sent", "delivered"]);
const NOT_VERIFIED = new Set(["failed", "no_answer", "busy", "rejected", "unreachable", "hung_up", "error"]);

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// Local time, 24-hour, to the millisecond: the order of events is the point.
function clock(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}.${pad(at.getMilliseconds(), 3)}`;
}

function stamp(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${clock(iso).slice(0, 8)}`;
}

function status(value) {
  return el("span", { className: `st st-${value}` }, value);
}

function requestLink(id) {
  return el("a", { href: `#request/${id}`, title: id }, id.slice(0, 8));
}

function cause(code, text) {
  if (code === null || code === undefined) return "–";
  return text ? `${code} ${text}` : String(code);
}

function fill(tableId, rows, empty) {
  const body = $(tableId).tBodies[0];
  const columns = $(tableId).tHead.rows[0].cells.length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", { className: "empty" }, el("td", { colspan: columns }, empty))]));
}

// --- the overview -------------------------------------------------------------

function renderOverview(o) {
  $("queue-depth").textContent = o.queue.depth;
  $("queue-age").textContent = o.queue.depth ? seconds(o.queue.oldest_age_seconds) : "–";
  $("calls-now").textContent = o.live_calls.length;
  $("day").textContent = `since ${stamp(o.day_started_at)}`;
  $("updated").textContent = `updated ${clock(new Date().toISOString()).slice(0, 8)}`;

  fill("nodes", o.nodes.map((n) =>
    el("tr", { dataset: { node: n.name } },
      el("td", {}, n.name),
      el("td", {}, el("span", { className: `health h-${n.state}` },
        { up: "up", down: "ARI websocket down", gone: "no controller reporting" }[n.state] || n.state)),
      el("td", {}, n.controllers),
      el("td", {}, n.calls))), "no controller has reported yet");

  fill("trunks", o.trunks.map((t) =>
    el("tr", { dataset: { trunk: t.name } },
      el("td", {}, t.name),
      el("td", {}, el("span", { className: `health h-${t.state}` },
        t.state === "down" && t.retry_in_seconds ? `down (retried in ${seconds(t.retry_in_seconds)})` : t.state)),
      el("td", {}, t.calls),
      el("td", {}, t.recent_calls),
      el("td", {}, t.recent_answered),
      el("td", { className: t.recent_trunk_failures ? "bad" : "" }, t.recent_trunk_failures))), "no trunk");

  fill("live-calls", o.live_calls.map((c) =>
    el("tr", { dataset: { id: c.id, status: c.status } },
      el("td", {}, requestLink(c.id)),
      el("td", {}, c.tenant),
      el("td", {}, c.method),
      el("td", { className: "status" }, status(c.answered ? "in_call" : "calling")),
      el("td", { className: "phone" }, c.phone),
      el("td", {}, c.node),
      el("td", {}, c.trunk),
      el("td", {}, c.attempt),
      el("td", {}, seconds(c.seconds)))), "no call in progress");

  fill("recent", o.recent.map((r) =>
    el("tr", { dataset: { id: r.id, status: r.status } },
      el("td", {}, clock(r.created_at)),
      el("td", {}, requestLink(r.id)),
      el("td", {}, r.tenant),
      el("td", {}, r.method),
      el("td", { className: "status" }, status(r.status)),
      el("td", {}, r.reason || ""),
      el("td", { className: "phone" }, r.phone),
      el("td", {}, seconds(r.timings.to_first_call)),
      el("td", {}, seconds(r.timings.answer_to_result)),
      el("td", {}, seconds(r.timings.total)),
      el("td", {}, seconds(r.timings.result_to_webhook)),
      el("td", {}, cause(r.cause, r.cause_txt)))), "no request yet");

  fill("tenants", o.tenants_today.map((t) => {
    let verified = 0, notVerified = 0, inProgress = 0;
    for (const [st, n] of Object.entries(t.by_status)) {
      if (st === "verified") verified += n;
      else if (NOT_VERIFIED.has(st)) notVerified += n;
      else if (IN_PROGRESS.has(st)) inProgress += n;
    }
    const settled = verified + notVerified;
    const name = t.tenant === null ? `${t.others} other tenant${t.others === 1 ? "" : "s"}` : t.tenant;
    return el("tr", { dataset: { tenant: t.tenant === null ? "" : t.tenant }, className: t.tenant === null ? "others" : "" },
      el("td", {}, name),
      el("td", {}, t.total),
      el("td", {}, verified),
      el("td", {}, notVerified),
      el("td", {}, t.by_status.expired || 0),
      el("td", {}, t.by_status.canceled || 0),
      el("td", {}, inProgress),
      el("td", {}, settled ? `${Math.round((100 * verified) / settled)} %` : "–"));
  }), "no request today");

  const open = openRequest();
  if (open && (o.changed.includes(open) || o.webhooks_moved)) loadDetail(open);
}

// --- a request's detail -----------------------------------------------------------

function openRequest() {
  const match = /^#request\/([0-9a-f-]{36})$/.exec(location.hash);
  return match ? match[1] : null;
}

// "sms → voice (60 s)", the channel in use in bold.
function channelList(channels, index) {
  if (!channels) return null;
  return el("span", {}, ...channels.flatMap((c, i) => {
    const name = c.after_seconds ? `${c.channel} (${c.after_seconds} s)` : c.channel;
    return [i ? " → " : "", i === index ? el("strong", {}, name) : name];
  }));
}

function brief(detail) {
  const parts = [];
  for (const [key, value] of Object.entries(detail || {})) {
    parts.push(`${key}=${typeof value === "object" ? JSON.stringify(value) : value}`);
  }
  return parts.join(" ");
}

async function loadDetail(id) {
  const response = await fetch(`/dashboard/api/verifications/${id}`, { headers: { Accept: "application/json" } });
  if (response.status === 401) { location.assign("/dashboard/login"); return; }
  if (id !== openRequest()) return;
  const error = $("detail-error");
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    error.textContent = (body.error && body.error.message) || `HTTP ${response.status}`;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  const d = await response.json();
  const r = d.request;
  $("detail-title").replaceChildren("Request ", el("code", {}, r.id), " ", status(r.status));
  $("detail").dataset.status = r.status;
  const fields = [
    ["tenant", r.tenant], ["method", r.method], ["phone", r.phone], ["line type", r.line_type],
    ["language", r.language], ["reason", r.reason], ["reference", r.reference],
    ["answered by", r.answered_by], ["inbound number", r.inbound_number],
    ["code attempts", `${r.code_attempts} of ${r.max_code_attempts}`],
    ["call attempts", `${r.call_attempts} of ${r.max_call_attempts}`],
    ["created", stamp(r.created_at)], ["answered", clock(r.answered_at)],
    ["finished", clock(r.finished_at)], ["expires", stamp(r.expires_at)],
    ["last SIP cause", cause(r.last_cause, r.last_cause_txt)], ["node", r.node],
    ["channels", channelList(r.channels, r.channel_index)], ["next channel", r.channels ? stamp(r.next_channel_at) : null],
    ["SMS sent", r.sent_at ? clock(r.sent_at) : null], ["delivered", r.delivered_at ? clock(r.delivered_at) : null],
  ];
  $("detail-fields").replaceChildren(...fields.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  fill("detail-events", d.events.map((e) =>
    el("tr", { dataset: { type: e.type } },
      el("td", {}, clock(e.at)),
      el("td", {}, e.type),
      el("td", {}, e.from_status || e.to_status ? `${e.from_status || "–"} → ${e.to_status || "–"}` : ""),
      el("td", { className: "detail" }, brief(e.detail)))), "no event");
  fill("detail-calls", d.calls.map((c) =>
    el("tr", {},
      el("td", {}, c.attempt), el("td", {}, c.node), el("td", {}, c.trunk), el("td", { className: "mono" }, c.channel_id),
      el("td", {}, clock(c.started_at)), el("td", {}, clock(c.answered_at)), el("td", {}, clock(c.ended_at)),
      el("td", {}, c.outcome || "–"), el("td", {}, cause(c.cause, c.cause_txt)))), "no call");
  fill("detail-sms", d.sms.map((m) =>
    el("tr", {},
      el("td", {}, m.channel_index), el("td", {}, m.carrier || "–"), el("td", {}, m.status),
      el("td", {}, m.attempts), el("td", {}, m.parts ?? "–"), el("td", {}, m.encoding || "–"),
      el("td", {}, clock(m.submitted_at)), el("td", {}, clock(m.finished_at)),
      el("td", { className: m.outcome === "delivered" || !m.outcome ? "" : "bad" }, m.outcome || "–"),
      el("td", {}, m.receipt_stat || (m.command_status !== null ? `status 0x${m.command_status.toString(16)}` : ""))
    )), "no SMS");
  const attempts = [];
  for (const w of d.webhooks) {
    const log = w.attempt_log.length ? w.attempt_log : [{ attempt: 0, at: null, status_code: null, error: "not sent yet", duration_ms: null }];
    for (const a of log) {
      attempts.push(el("tr", {},
        el("td", {}, w.event_type), el("td", { className: "mono" }, w.url), el("td", {}, a.attempt || "–"),
        el("td", {}, clock(a.at)), el("td", { className: a.status_code >= 200 && a.status_code < 300 ? "" : "bad" }, a.status_code ?? "–"),
        el("td", {}, a.error || ""), el("td", {}, a.duration_ms ?? "–")));
    }
  }
  fill("detail-webhooks", attempts, "no webhook (the request has no callback_url)");
}

function showDetail() {
  const id = openRequest();
  $("detail").hidden = !id;
  if (id) loadDetail(id);
}

// --- the live connection ---------------------------------------------------------

function setLive(state, text) {
  $("live").dataset.state = state;
  $("live").textContent = text;
}

let source = null;

function connect() {
  source = new EventSource("/dashboard/api/stream");
  source.addEventListener("open", () => setLive("live", "live"));
  source.addEventListener("overview", (e) => { setLive("live", "live"); renderOverview(JSON.parse(e.data)); });
  source.addEventListener("unavailable", (e) => setLive("down", JSON.parse(e.data).message));
  source.addEventListener("logout", () => location.assign("/dashboard/login"));
  source.addEventListener("closing", () => { source.close(); setLive("down", "server restarting…"); setTimeout(connect, 2000); });
  source.addEventListener("error", async () => {
    setLive("down", "reconnecting…");
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright: a login that ended, or the server is gone.
      const check = await fetch("/dashboard/api/overview").catch(() => null);
      if (check && check.status === 401) { location.assign("/dashboard/login"); return; }
      setTimeout(connect, 3000);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("detail-close").addEventListener("click", (e) => { e.preventDefault(); history.pushState(null, "", location.pathname); showDetail(); });
  window.addEventListener("hashchange", showDetail);
  showDetail();
  connect();
});
