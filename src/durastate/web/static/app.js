// The durastate page: the instance list (polled) and one instance (live, from the event
// stream). Every value reaches the page through textContent, never as HTML.
"use strict";

const root = document.body.dataset.root || "";
const TOKEN_KEY = "durastate.token";
const $ = (id) => document.getElementById(id);

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

class Unauthorized extends Error {}

async function api(path, headers) {
  const response = await fetch(root + path, { headers: { ...authHeaders(), ...headers } });
  if (response.status === 401) throw new Unauthorized();
  return response;
}

function askForToken(refused) {
  $("token-box").hidden = false;
  $("list-view").hidden = true;
  $("instance-view").hidden = true;
  $("token-error").hidden = !refused;
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  $("token-box").hidden = true;
  start();
});

function setConnection(text, live) {
  $("connection").textContent = text;
  $("connection").classList.toggle("live", live);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function when(text) {
  return text ? new Date(text).toLocaleString() : "—";
}

// A progress bar for a numeric percent/progress field, else the JSON pretty-printed.
function percentOf(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  if (typeof value.percent === "number" && isFinite(value.percent)) return value.percent;
  if (typeof value.progress === "number" && isFinite(value.progress)) {
    return value.progress <= 1 ? value.progress * 100 : value.progress;
  }
  return null;
}

function renderCustomStatus(value) {
  const percent = percentOf(value);
  if (percent === null) {
    return el("pre", "json", value === undefined ? "null" : JSON.stringify(value, null, 2));
  }
  const shown = Math.max(0, Math.min(100, percent));
  const box = el("div", "progress-box");
  const line = el("div", "progress");
  const bar = el("div", "bar");
  const fill = el("span");
  fill.style.width = shown + "%";
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuenow", String(shown));
  bar.append(fill);
  line.append(bar, el("span", "percent", Math.round(percent * 10) / 10 + " %"));
  box.append(line);
  const rest = Object.entries(value).filter(([key]) => key !== "percent" && key !== "progress");
  if (rest.length) {
    const detail = rest.map(([key, item]) =>
      key + ": " + (typeof item === "string" ? item : JSON.stringify(item))).join(" · ");
    box.append(el("div", "detail", detail));
  }
  return box;
}

function badge(status) {
  return el("span", "badge " + status, status);
}

// -- the list ------------------------------------------------------------------------------

let listTimer = null;

async function refreshList() {
  const params = new URLSearchParams({ top: "100" });
  if ($("filter-status").value) params.set("runtimeStatus", $("filter-status").value);
  if ($("filter-prefix").value) params.set("instanceIdPrefix", $("filter-prefix").value);
  try {
    const response = await api("/instances?" + params.toString());
    if (!response.ok) throw new Error("HTTP " + response.status);
    const items = await response.json();
    const rows = items.map((item) => {
      const row = el("tr");
      row.dataset.instanceId = item.instanceId;
      const link = el("a", null, item.instanceId);
      link.href = root + "/ui/instances/" + encodeURIComponent(item.instanceId);
      const cells = [link, el("span", null, item.name), badge(item.runtimeStatus),
        renderCustomStatus(item.customStatus),
        el("span", "muted", when(item.customStatusUpdatedTime || item.lastUpdatedTime))];
      for (const content of cells) {
        const cell = el("td");
        cell.append(content);
        row.append(cell);
      }
      return row;
    });
    $("instance-rows").replaceChildren(...rows);
    $("empty").hidden = rows.length > 0;
    setConnection("updated " + new Date().toLocaleTimeString(), true);
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken(true);
    setConnection("cannot reach the server", false);
  }
  listTimer = setTimeout(refreshList, 1000);
}

for (const id of ["filter-status", "filter-prefix"]) {
  $(id).addEventListener("input", () => { clearTimeout(listTimer); refreshList(); });
}

function showList() {
  $("list-view").hidden = false;
  clearTimeout(listTimer);
  refreshList();
}

// -- one instance, live ----------------------------------------------------------------------

function renderInstance(item) {
  $("instance-id").textContent = item.instanceId;
  $("instance-name").textContent = item.name;
  $("instance-status").replaceChildren(badge(item.runtimeStatus));
  $("instance-created").textContent = when(item.createdTime);
  $("instance-updated").textContent = when(item.lastUpdatedTime);
  $("instance-status-updated").textContent = when(item.customStatusUpdatedTime);
  $("instance-progress").replaceChildren(renderCustomStatus(item.customStatus));
}

// Server-Sent Events read with fetch (EventSource cannot send the Authorization header).
async function followInstance(instanceId) {
  const path = "/instances/" + encodeURIComponent(instanceId) + "/events";
  let lastId = null;
  for (;;) {
    try {
      const response = await api(path, lastId ? { "Last-Event-ID": lastId } : {});
      if (response.status === 404) {
        setConnection("no such instance", false);
        $("instance-id").textContent = instanceId;
        $("instance-progress").replaceChildren(el("p", "error", "This instance does not exist."));
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      setConnection("live", true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = { type: "message", data: [], id: null };
          for (const line of block.split("\n")) {
            const colon = line.indexOf(":");
            if (colon === 0) continue;
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event.type = text;
            else if (field === "data") event.data.push(text);
            else if (field === "id") event.id = text;
          }
          if (event.id) lastId = event.id;
          if (event.type === "status") renderInstance(JSON.parse(event.data.join("\n")));
          if (event.type === "deleted") {
            setConnection("instance deleted", false);
            return;
          }
        }
      }
      setConnection("finished", false);
      return;
    } catch (error) {
      if (error instanceof Unauthorized) return askForToken(true);
      setConnection("reconnecting…", false);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function start() {
  const path = location.pathname.slice(root.length);
  const prefix = "/ui/instances/";
  if (path.startsWith(prefix)) {
    $("instance-view").hidden = false;
    followInstance(decodeURIComponent(path.slice(prefix.length)));
  } else {
    showList();
  }
}

start();
