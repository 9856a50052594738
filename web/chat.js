// The customer chat: a session token kept in localStorage (so a reload finds the
// conversation again), answers streamed as server-sent events over fetch, product
// cards with price, stock and why, and an agent's answers picked up by polling.
"use strict";

const KEY = "shopgraph.chat";
const log = document.getElementById("log");
const form = document.getElementById("composer");
const input = document.getElementById("message");
const sendButton = document.getElementById("send");
const statusLine = document.getElementById("status");
let session = JSON.parse(localStorage.getItem(KEY) || "null");
let lastId = 0;
let busy = false;

const STATES = {
  bot: "the assistant is answering",
  waiting: "waiting for a colleague",
  agent: "a colleague is answering",
  closed: "this conversation is closed",
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function bubble(role, text) {
  const b = el("div", "msg " + role);
  const who = { user: "You", assistant: "Assistant", agent: "Colleague" }[role] || role;
  b.append(el("span", "who", who), el("span", "text", text));
  log.append(b);
  b.scrollIntoView({ block: "end" });
  return b;
}

function cards(list) {
  const box = el("div", "cards");
  box.setAttribute("role", "list");
  for (const c of list) {
    const card = el("article", "card");
    card.setAttribute("role", "listitem");
    card.dataset.sku = c.sku;
    card.append(el("h3", "", c.title));
    if (c.author) card.append(el("div", "by", "by " + c.author + (c.year ? ", " + c.year : "")));
    card.append(el("div", "price", c.price));
    card.append(el("div", c.stock > 0 ? "stock" : "stock out", c.stock > 0 ? c.stock + " in stock" : "out of stock"));
    if (c.reason) card.append(el("div", "why", c.reason));
    box.append(card);
  }
  log.append(box);
  box.scrollIntoView({ block: "end" });
}

function show(m) {
  if (m.id <= lastId) return;
  lastId = m.id;
  if (m.tool === "cards") cards(m.data || []);
  else bubble(m.role, m.content);
}

function setState(state) {
  statusLine.textContent = STATES[state] || state;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (session) headers.Authorization = "Bearer " + session.token;
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  if (!r.ok) {
    let message = r.statusText;
    try { message = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    const e = new Error(message);
    e.status = r.status;
    throw e;
  }
  return r;
}

async function start() {
  session = null;
  const r = await api("POST", "/api/v1/chat/sessions", {});
  session = await r.json();
  localStorage.setItem(KEY, JSON.stringify(session));
  log.textContent = "";
  lastId = 0;
  setState("bot");
}

async function restore() {
  if (!session) return start();
  try {
    const view = await (await api("GET", "/api/v1/chat/conversation")).json();
    view.messages.forEach(show);
    setState(view.state);
  } catch (e) {
    if (e.status === 401 || e.status === 404) return start();
    throw e;
  }
}

// Reads a text/event-stream body: blocks separated by a blank line, `event:` and
// `data:` lines (several data lines join with newlines).
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

async function send(text) {
  busy = true;
  sendButton.disabled = true;
  bubble("user", text);
  const answer = bubble("assistant", "");
  answer.setAttribute("aria-busy", "true");
  const body = answer.querySelector(".text");
  try {
    const r = await api("POST", "/api/v1/chat/messages", { text });
    for await (const e of events(r)) {
      if (e.event === "text") body.textContent += e.data;
      else if (e.event === "replace") body.textContent = e.data;
      else if (e.event === "cards") cards(JSON.parse(e.data));
      else if (e.event === "done") {
        const done = JSON.parse(e.data);
        if (done.message) lastId = Math.max(lastId, done.message);
        setState(done.state);
      } else if (e.event === "error") body.textContent = JSON.parse(e.data).message;
    }
  } catch (e) {
    answer.remove();
    bubble("assistant", "Sorry, that did not go through: " + e.message);
  } finally {
    answer.removeAttribute("aria-busy");
    busy = false;
    sendButton.disabled = false;
    input.focus();
  }
}

// An agent's answers, and anything sent from another tab.
async function poll() {
  if (busy || !session) return;
  try {
    const view = await (await api("GET", "/api/v1/chat/messages?after=" + lastId)).json();
    view.messages.forEach(show);
    setState(view.state);
  } catch (_) { /* the next poll tries again */ }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text || busy) return;
  input.value = "";
  send(text);
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    form.requestSubmit();
  }
});
document.getElementById("restart").addEventListener("click", () => start().catch((e) => { statusLine.textContent = e.message; }));

restore().catch((e) => { statusLine.textContent = "cannot reach the shop: " + e.message; });
setInterval(poll, 2000);
