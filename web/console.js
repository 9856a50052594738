// The agent console: the handoff inbox, a conversation with takeover and answers,
// the customer's interests with their sources (and removing a wrong one), and a
// picture of a product's or customer's neighbourhood in the knowledge graph.
"use strict";

const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem("shopgraph.key") || "";
let open = null; // the conversation shown: its header

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = "status" + (isError ? " error" : "");
}

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok) {
    let message = r.statusText;
    try { message = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return r.status === 204 ? null : r.json();
}

async function inbox() {
  if (!key) return;
  try {
    const list = await api("GET", "/api/v1/agent/conversations?state=" + $("inbox-state").value);
    const ul = $("inbox");
    ul.textContent = "";
    for (const c of list) {
      const li = el("li");
      const b = el("button", "", "");
      b.type = "button";
      b.dataset.id = c.id;
      b.setAttribute("aria-current", String(open !== null && open.id === c.id));
      b.append(el("strong", "", "#" + c.id + " "), document.createTextNode(c.customer + " "), el("span", "state " + c.state, c.state));
      b.addEventListener("click", () => show(c.id));
      li.append(b);
      ul.append(li);
    }
    if (!list.length) ul.append(el("li", "notice", "Nothing here."));
    say("");
  } catch (e) {
    say(e.message, true);
  }
}

function packet(data) {
  const box = el("div", "packet");
  box.append(el("strong", "", "Handed off: " + (data.reason || "")));
  if (data.summary) box.append(el("p", "", data.summary));
  if (data.interests && data.interests.length) box.append(el("p", "", "Interests: " + data.interests.map((i) => i.subject || i).join(", ")));
  return box;
}

async function show(id) {
  try {
    const view = await api("GET", "/api/v1/agent/conversations/" + id);
    open = view.conversation;
    const head = $("thread-head");
    head.textContent = "";
    head.append(el("strong", "", "#" + open.id + " " + open.customer), el("span", "state " + open.state, open.state));
    if (open.agent) head.append(el("span", "notice", "with " + open.agent));
    const thread = $("thread");
    thread.textContent = "";
    for (const m of view.messages) {
      if (m.tool === "handoff" && m.data) thread.append(packet(m.data));
      else if (m.tool === "cards" && m.data) thread.append(el("div", "notice", "shown: " + m.data.map((c) => c.title).join("; ")));
      else if (m.role === "user" || m.role === "assistant" || m.role === "agent") {
        const b = el("div", "msg " + m.role);
        b.append(el("span", "who", { user: "Customer", assistant: "Assistant", agent: "Agent" }[m.role]), el("span", "text", m.content));
        thread.append(b);
      }
    }
    thread.scrollTop = thread.scrollHeight;
    const mine = open.state === "agent";
    $("takeover").disabled = mine || open.state === "closed";
    $("close").disabled = open.state === "closed";
    $("reply").disabled = !mine;
    $("send-reply").disabled = !mine;
    await profile(open.customer);
    inbox();
  } catch (e) {
    say(e.message, true);
  }
}

async function profile(customer) {
  const p = await api("GET", "/api/v1/agent/customers/" + encodeURIComponent(customer));
  const box = $("profile");
  box.textContent = "";
  box.append(el("strong", "", p.name || p.id));
  if (p.location) box.append(el("div", "notice", p.location));
  box.append(el("div", "notice", p.conversations.length + " conversation(s)"));
  const ul = $("interests");
  ul.textContent = "";
  for (const i of p.interests) {
    const li = el("li");
    const what = el("span", "", (i.polarity === "likes" ? "likes " : "dislikes ") + i.subject + " (" + i.weight.toFixed(2) + ")");
    const src = el("span", "source", "from " + i.source + (i.source_ref ? " " + i.source_ref : ""));
    const rm = el("button", "quiet", "Remove");
    rm.type = "button";
    rm.setAttribute("aria-label", "Remove the interest " + i.subject);
    rm.addEventListener("click", async () => {
      try {
        await api("DELETE", "/api/v1/agent/customers/" + encodeURIComponent(customer) + "/interests/" + i.id);
        profile(customer);
      } catch (e) { say(e.message, true); }
    });
    const left = el("span");
    left.append(what, el("br"), src);
    li.append(left, rm);
    ul.append(li);
  }
  if (!p.interests.length) ul.append(el("li", "notice", "No interests known."));
  const recs = $("recs");
  recs.textContent = "";
  for (const c of p.recommendations) {
    const card = el("article", "card");
    card.append(el("h3", "", c.title), el("div", "price", c.price), el("div", "why", c.reason));
    recs.append(card);
  }
  if (!$("node").value) $("node").value = "user:" + p.id;
}

const COLOURS = { product: "#1f5fbf", user: "#7a3db8", author: "#2b8a3e", publisher: "#b7791f", category: "#c0392b", brand: "#2b8a3e" };

async function draw(nodeRef) {
  const svg = $("graph");
  try {
    const view = await api("GET", "/api/v1/agent/graph/neighbourhood?node=" + encodeURIComponent(nodeRef) + "&hops=" + $("hops").value);
    while (svg.lastChild && svg.lastChild.nodeName !== "title") svg.removeChild(svg.lastChild);
    const W = 700, H = 420, cx = W / 2, cy = H / 2;
    // The centre, its neighbours on a ring, theirs on a wider ring near their parent.
    const pos = [[cx, cy]];
    const parent = {};
    for (const e of view.edges) {
      const [a, b] = [e.from, e.to];
      if (a === 0 && parent[b] === undefined) parent[b] = 0;
      else if (b === 0 && parent[a] === undefined) parent[a] = 0;
    }
    const first = view.nodes.map((_, i) => i).filter((i) => parent[i] === 0);
    first.forEach((n, k) => {
      const t = (2 * Math.PI * k) / Math.max(first.length, 1);
      pos[n] = [cx + 140 * Math.cos(t), cy + 140 * Math.sin(t)];
    });
    let k = 0;
    view.nodes.forEach((_, i) => {
      if (pos[i]) return;
      const t = (2 * Math.PI * k++) / Math.max(view.nodes.length - first.length, 1);
      pos[i] = [cx + 195 * Math.cos(t), cy + 195 * Math.sin(t) * 0.95];
    });
    const ns = "http://www.w3.org/2000/svg";
    for (const e of view.edges) {
      const line = document.createElementNS(ns, "line");
      const [x1, y1] = pos[e.from], [x2, y2] = pos[e.to];
      Object.entries({ x1, y1, x2, y2 }).forEach(([a, v]) => line.setAttribute(a, v));
      const t = document.createElementNS(ns, "title");
      t.textContent = e.relation;
      line.append(t);
      svg.append(line);
    }
    view.nodes.forEach((n, i) => {
      const [x, y] = pos[i];
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", i === 0 ? 11 : 7);
      c.setAttribute("fill", COLOURS[n.kind] || "#6c7a89");
      c.setAttribute("tabindex", "0");
      c.setAttribute("role", "button");
      c.setAttribute("aria-label", n.kind + " " + n.label);
      const t = document.createElementNS(ns, "title");
      t.textContent = n.kind + ": " + n.label + " (" + n.ref + ")";
      c.append(t);
      const go = () => { $("node").value = n.ref; draw(n.ref); };
      c.addEventListener("click", go);
      c.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(); });
      svg.append(c);
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", x + 9); label.setAttribute("y", y + 3);
      label.textContent = n.label.length > 28 ? n.label.slice(0, 27) + "…" : n.label;
      svg.append(label);
    });
    $("graph-caption").textContent = "Neighbourhood of " + view.nodes[0].label + ": " + (view.nodes.length - 1) + " nodes";
  } catch (e) {
    say(e.message, true);
  }
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  key = $("key").value.trim();
  sessionStorage.setItem("shopgraph.key", key);
  $("key").value = "";
  inbox();
});
$("inbox-state").addEventListener("change", inbox);
$("takeover").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/agent/conversations/" + open.id + "/takeover"); show(open.id); } catch (e) { say(e.message, true); }
});
$("close").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/agent/conversations/" + open.id + "/close"); show(open.id); } catch (e) { say(e.message, true); }
});
$("reply-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("reply").value.trim();
  if (!text) return;
  try {
    await api("POST", "/api/v1/agent/conversations/" + open.id + "/messages", { text });
    $("reply").value = "";
    show(open.id);
  } catch (err) { say(err.message, true); }
});
// ---- insight: segments and rules as tables, demand as a chart ----

function cells(tr, values) {
  for (const v of values) tr.append(el("td", "", v));
}

async function insight() {
  try {
    const segs = await api("GET", "/api/v1/insight/segments");
    const sb = $("segments").querySelector("tbody");
    sb.textContent = "";
    for (const s of segs.segments) {
      const tr = el("tr");
      cells(tr, [s.segment, String(s.shoppers), s.description]);
      sb.append(tr);
    }
    if (!segs.segments.length) {
      const tr = el("tr");
      cells(tr, ["—", "", "No segments yet: an admin computes them."]);
      sb.append(tr);
    }
    const rules = await api("GET", "/api/v1/insight/rules?n=20");
    const rb = $("rules").querySelector("tbody");
    rb.textContent = "";
    for (const r of rules.rules) {
      const tr = el("tr");
      cells(tr, [r.has_titles.join(" + "), r.also_titles.join(" + "), (100 * r.support).toFixed(2) + "%", (100 * r.confidence).toFixed(0) + "%", r.lift.toFixed(1)]);
      rb.append(tr);
    }
    if (!rules.rules.length) {
      const tr = el("tr");
      cells(tr, ["No rules yet: an admin mines them.", "", "", "", ""]);
      rb.append(tr);
    }
    say("");
  } catch (e) {
    say(e.message, true);
  }
}

async function chart(of) {
  try {
    const q = "/api/v1/insight/forecast?of=" + encodeURIComponent(of);
    const f = await api("GET", q);
    const m = (x) => (x === null || x === undefined ? "—" : x.toFixed(2));
    $("forecast-note").textContent = f.name + ": next weeks " + f.forecast.map((v) => v.toFixed(1)).join(", ") +
      "; backtest MASE " + m(f.mase) + " (seasonal-naive " + m(f.mase_naive) + ")" +
      (f.weeks_of_stock ? "; stock lasts " + f.weeks_of_stock.toFixed(1) + " weeks" : "");
    const r = await fetch(q + "&format=svg", { headers: { Authorization: "Bearer " + key } });
    if (!r.ok) throw new Error(r.statusText);
    const doc = new DOMParser().parseFromString(await r.text(), "image/svg+xml");
    const box = $("forecast-chart");
    box.textContent = "";
    box.append(document.importNode(doc.documentElement, true));
    say("");
  } catch (e) {
    say(e.message, true);
  }
}

$("load-insight").addEventListener("click", insight);
$("forecast-form").addEventListener("submit", (e) => { e.preventDefault(); if ($("forecast-of").value) chart($("forecast-of").value.trim()); });
$("graph-form").addEventListener("submit", (e) => { e.preventDefault(); if ($("node").value) draw($("node").value.trim()); });

if (key) inbox();
setInterval(inbox, 4000);
