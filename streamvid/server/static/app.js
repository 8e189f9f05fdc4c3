// streamvid dashboard: plain JS, no dependencies. Every string from the server goes into the DOM
// as text (textContent / attributes), never as HTML.
"use strict";

(function () {
  const MAX_EVENTS = 500; // kept per stream (list and timeline markers)
  const FRAME_MIN_INTERVAL_MS = 500; // at most 2 frame refreshes per second
  const EVENT_KINDS = ["entered", "left", "motion", "scene_change", "match"];

  const state = {
    streams: [], // from /health
    memory: {}, // stream id -> /memory entry
    selected: null, // stream id shown in frame/timeline/events
    events: {}, // stream id -> Map(event id -> event)
    maxEventId: 0,
    position: {}, // stream id -> newest known time
    highlight: null, // {stream, start, end}
    authFailed: false,
    sse: null,
    sseOpenedOnce: false,
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ helpers

  // Python's round(): halves go to the even neighbour (keeps fmtTime equal to streamvid.timefmt.fmt_time).
  function roundHalfEven(x) {
    const f = Math.floor(x);
    const d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  function pad2(n) {
    return n < 10 ? "0" + n : String(n);
  }

  // 83.25 -> "00:01:23.2" (HH:MM:SS.s), as streamvid.timefmt.fmt_time.
  function fmtTime(seconds) {
    const v = Number(seconds);
    if (seconds === null || seconds === undefined || !Number.isFinite(v)) return "—";
    const tenths = roundHalfEven(Math.max(0, v) * 10);
    const d = tenths % 10;
    let s = (tenths - d) / 10;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    return pad2(h) + ":" + pad2(m) + ":" + pad2(s) + "." + d;
  }

  // As streamvid.report's moment time: a point, a span, or a point inside a span.
  function fmtMoment(m) {
    const t = num(m.t), start = num(m.start, t), end = num(m.end, start);
    if (!(end - start >= 0.05)) return fmtTime(t);
    if (Math.abs(t - start) < 0.05) return fmtTime(start) + "–" + fmtTime(end);
    return fmtTime(t) + " (" + fmtTime(start) + "–" + fmtTime(end) + ")";
  }

  function num(v, fallback) {
    const n = Number(v);
    return v === null || v === undefined || !Number.isFinite(n) ? (fallback === undefined ? 0 : fallback) : n;
  }

  function str(v) {
    return v === null || v === undefined ? "" : String(v);
  }

  // Only same-origin paths from the server become image URLs.
  function safeUrl(u) {
    return typeof u === "string" && u.startsWith("/") && !u.startsWith("//") ? u : null;
  }

  function kindClass(kind) {
    return EVENT_KINDS.includes(kind) ? "k-" + kind : "k-other";
  }

  // el("div", {class: "x", title: "..."}, "text", child, ...): children that are strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function thumbImg(url, alt) {
    const src = safeUrl(url);
    if (!src) return el("span", { class: "thumb thumb-missing", "aria-hidden": "true" });
    const img = el("img", { class: "thumb", src: src, alt: alt, decoding: "async" });
    img.addEventListener("error", () => {
      img.replaceWith(el("span", { class: "thumb thumb-missing", title: "thumbnail no longer in memory" }));
    });
    return img;
  }

  function streamName(id) {
    const s = state.streams.find((x) => x.id === id);
    return s ? str(s.name) : "stream " + id;
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options) {
    let resp;
    try {
      resp = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options || {}));
    } catch (e) {
      throw new ApiError("cannot reach the server (" + (e && e.message ? e.message : e) + ")", 0);
    }
    let body = null;
    const type = resp.headers.get("content-type") || "";
    if (type.includes("json")) {
      try {
        body = await resp.json();
      } catch (e) {
        body = null;
      }
    }
    if (resp.status === 401) showAuthNeeded();
    if (!resp.ok) {
      const msg = body && typeof body.error === "string" ? body.error : "HTTP " + resp.status + " " + resp.statusText;
      throw new ApiError(msg, resp.status);
    }
    if (body === null) throw new ApiError("unexpected response from " + path + " (not JSON)", resp.status);
    return body;
  }

  function showAuthNeeded() {
    if (state.authFailed) return;
    state.authFailed = true;
    const n = $("notice");
    n.replaceChildren(
      el("strong", {}, "Not authorized. "),
      "This server needs a token: open the page as ",
      el("code", {}, "/?token=…"),
      " (the token given to ",
      el("code", {}, "streamvid serve --token"),
      ")."
    );
    n.hidden = false;
    setConnection("not authorized", "bad");
  }

  function showNotice(text) {
    if (state.authFailed) return;
    const n = $("notice");
    n.textContent = text;
    n.hidden = !text;
  }

  function setConnection(text, cls) {
    const c = $("connection");
    c.textContent = text;
    c.className = "connection " + (cls || "");
  }

  // ------------------------------------------------------------------ streams and status

  function applyHealth(doc) {
    if (!doc || !Array.isArray(doc.streams)) return;
    const before = state.streams.map((s) => s.id + ":" + s.name).join("|");
    const oldStates = {};
    for (const s of state.streams) oldStates[s.id] = s.state;
    state.streams = doc.streams;
    for (const s of state.streams) {
      if (s.position !== null && s.position !== undefined) bumpPosition(s.id, num(s.position));
    }
    if (state.selected === null || !state.streams.some((s) => s.id === state.selected)) {
      state.selected = state.streams.length ? state.streams[0].id : null;
    }
    const after = state.streams.map((s) => s.id + ":" + s.name).join("|");
    if (before !== after) renderStreamPicker();
    renderStatus();
    if (doc.version) document.title = "streamvid " + doc.version;
    const sel = state.streams.find((s) => s.id === state.selected);
    if (sel && oldStates[sel.id] !== sel.state && sel.kind === "memory") refreshFrame();
  }

  function renderStreamPicker() {
    const picker = $("stream-picker");
    const select = $("stream");
    select.replaceChildren(
      ...state.streams.map((s) => el("option", { value: s.id, selected: s.id === state.selected }, str(s.name) || "stream " + s.id))
    );
    picker.hidden = state.streams.length <= 1;
  }

  function renderStatus() {
    const list = $("status");
    list.replaceChildren(
      ...state.streams.map((s) => {
        const parts = [
          ["frames", str(s.frames)],
          ["dropped", str(s.dropped)],
          ["position", fmtTime(s.position)],
        ];
        if (num(s.reconnects) > 0) parts.push(["reconnects", str(s.reconnects)]);
        if (num(s.gaps) > 0) parts.push(["gaps", str(s.gaps)]);
        if (s.fps !== null && s.fps !== undefined && Number.isFinite(Number(s.fps))) {
          parts.push(["fps", Number(s.fps).toFixed(1)]);
        }
        const items = [
          el("span", { class: "stream-name" }, str(s.name) || "stream " + s.id),
          el("span", { class: "badge state-" + str(s.state).replace(/[^a-z]/g, "") }, str(s.state)),
          el("span", { class: "muted" }, str(s.kind)),
          ...parts.map(([k, v]) => el("span", { class: "stat" }, el("span", { class: "muted" }, k + " "), v)),
        ];
        if (s.error) items.push(el("span", { class: "stream-error" }, "error: " + str(s.error)));
        // spaces between the items, so that the line reads (and copies) as words
        const li = el(
          "li",
          { class: "stream-status" + (s.id === state.selected ? " selected" : ""), "data-stream": s.id },
          ...items.flatMap((x, i) => (i ? [" ", x] : [x]))
        );
        if (state.streams.length > 1 && s.id !== state.selected) {
          li.classList.add("selectable");
          li.title = "show this stream";
          li.addEventListener("click", () => selectStream(s.id));
        }
        return li;
      })
    );
  }

  function bumpPosition(stream, t) {
    if (!Number.isFinite(t)) return;
    const old = state.position[stream];
    if (old === undefined || t > old) {
      state.position[stream] = t;
      if (stream === state.selected) renderTimelineGeometry();
    }
  }

  async function loadMemory() {
    try {
      const doc = await api("/memory");
      for (const m of doc.streams || []) {
        state.memory[m.id] = m;
        if (m.last_t !== null && m.last_t !== undefined) bumpPosition(m.id, num(m.last_t));
        if (m.position !== null && m.position !== undefined) bumpPosition(m.id, num(m.position));
      }
      renderTimelineGeometry();
    } catch (e) {
      if (e.status !== 401) showNotice("Could not load the memory: " + e.message);
    }
  }

  // ------------------------------------------------------------------ latest frame

  const frame = { counter: 0, loading: false, pending: false, last: 0, timer: null };

  function refreshFrame() {
    if (state.selected === null || state.authFailed) return;
    if (frame.loading) {
      frame.pending = true;
      return;
    }
    const wait = frame.last + FRAME_MIN_INTERVAL_MS - Date.now();
    if (wait > 0) {
      if (!frame.timer) {
        frame.timer = setTimeout(() => {
          frame.timer = null;
          refreshFrame();
        }, wait);
      }
      return;
    }
    frame.loading = true;
    frame.pending = false;
    frame.last = Date.now();
    frame.counter += 1;
    $("frame").src = "/frame.jpg?stream=" + encodeURIComponent(state.selected) + "&_=" + frame.counter;
  }

  function frameDone(ok) {
    frame.loading = false;
    $("frame").hidden = !ok;
    $("frame-placeholder").hidden = ok;
    if (frame.pending) refreshFrame();
  }

  // ------------------------------------------------------------------ timeline

  function timelineSpan() {
    const id = state.selected;
    const mem = state.memory[id] || {};
    const evs = state.events[id] ? [...state.events[id].values()] : [];
    let t0 = mem.first_t;
    if (t0 === null || t0 === undefined) t0 = evs.length ? Math.min(...evs.map((e) => num(e.t))) : 0;
    t0 = Math.min(num(t0), ...evs.map((e) => num(e.t)));
    let t1 = Math.max(num(mem.last_t, t0), num(state.position[id], t0), ...evs.map((e) => num(e.t)));
    if (!(t1 - t0 > 0)) t1 = t0 + 1;
    return [t0, t1];
  }

  function pct(t, span) {
    return Math.max(0, Math.min(100, ((t - span[0]) / (span[1] - span[0])) * 100));
  }

  function renderTimeline() {
    const track = $("timeline-track");
    for (const m of track.querySelectorAll(".tl-marker")) m.remove();
    const evs = state.events[state.selected];
    if (evs) {
      for (const ev of evs.values()) track.append(markerFor(ev));
    }
    renderTimelineGeometry();
  }

  function markerFor(ev) {
    const tip = fmtTime(ev.t) + " " + str(ev.event) + (ev.description ? " — " + str(ev.description) : "") +
      (ev.alert ? " (alert: " + str(ev.alert) + ")" : "");
    return el("button", {
      type: "button",
      class: "tl-marker " + kindClass(ev.event) + (ev.alert ? " alert" : ""),
      title: tip,
      "aria-label": tip,
      "data-t": num(ev.t),
      "data-id": ev.id,
      onclick: () => showEvent(ev),
    });
  }

  function renderTimelineGeometry() {
    const span = timelineSpan();
    const id = state.selected;
    for (const m of $("timeline-track").querySelectorAll(".tl-marker")) {
      m.style.left = pct(Number(m.dataset.t), span) + "%";
    }
    const mem = state.memory[id] || {};
    const w = $("timeline-watched");
    const a = pct(num(mem.first_t, span[0]), span);
    const b = pct(num(state.position[id], num(mem.last_t, span[0])), span);
    w.style.left = a + "%";
    w.style.width = Math.max(0, b - a) + "%";
    const now = $("timeline-now");
    const pos = state.position[id];
    now.hidden = pos === undefined;
    if (pos !== undefined) {
      now.style.left = pct(pos, span) + "%";
      now.title = "now: " + fmtTime(pos);
    }
    const hl = $("timeline-highlight");
    if (state.highlight && state.highlight.stream === id) {
      const s = pct(state.highlight.start, span);
      const e = pct(state.highlight.end, span);
      hl.style.left = s + "%";
      hl.style.width = Math.max(e - s, 0) + "%";
      hl.title = state.highlight.label;
      hl.hidden = false;
    } else {
      hl.hidden = true;
    }
    const axis = $("timeline-axis");
    const ticks = [];
    for (let k = 0; k <= 4; k++) ticks.push(el("span", {}, fmtTime(span[0] + ((span[1] - span[0]) * k) / 4)));
    axis.replaceChildren(...ticks);
  }

  function showEvent(ev) {
    const d = $("timeline-detail");
    d.replaceChildren(
      thumbImg(ev.thumbnail, "thumbnail at " + fmtTime(ev.t)),
      el(
        "div",
        {},
        el("div", {}, el("span", { class: "time" }, fmtTime(ev.t)), " ", el("span", { class: "kind " + kindClass(ev.event) }, str(ev.event))),
        el("div", {}, str(ev.description)),
        ev.alert ? el("div", { class: "alert-text" }, "alert: " + str(ev.alert)) : null
      ),
      el("button", { type: "button", class: "link", "aria-label": "Close", onclick: () => { d.hidden = true; } }, "×")
    );
    d.hidden = false;
    for (const x of document.querySelectorAll(".event.selected, .tl-marker.selected")) x.classList.remove("selected");
    const item = document.querySelector('.event[data-id="' + CSS.escape(String(ev.id)) + '"]');
    if (item) {
      item.classList.add("selected");
      item.scrollIntoView({ block: "nearest" });
    }
    const mk = document.querySelector('.tl-marker[data-id="' + CSS.escape(String(ev.id)) + '"]');
    if (mk) mk.classList.add("selected");
  }

  function highlightMoment(stream, m, node) {
    const t = num(m.t), start = num(m.start, t), end = num(m.end, start);
    state.highlight = { stream: stream, start: Math.min(start, t), end: Math.max(end, t), label: fmtMoment(m) };
    for (const x of document.querySelectorAll(".moment.selected")) x.classList.remove("selected");
    if (node) node.classList.add("selected");
    if (stream !== state.selected && state.streams.some((s) => s.id === stream)) {
      selectStream(stream);
    } else {
      renderTimelineGeometry();
    }
    $("timeline").scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  // ------------------------------------------------------------------ events

  function addEvent(ev, render) {
    if (!ev || ev.id === undefined || ev.id === null) return;
    const sid = ev.stream === undefined || ev.stream === null ? state.selected : ev.stream;
    if (!state.events[sid]) state.events[sid] = new Map();
    const map = state.events[sid];
    if (num(ev.id) > state.maxEventId) state.maxEventId = num(ev.id);
    if (map.has(ev.id)) return;
    map.set(ev.id, ev);
    if (ev.t !== null && ev.t !== undefined) bumpPosition(sid, num(ev.t));
    let evicted = null;
    if (map.size > MAX_EVENTS) {
      evicted = map.keys().next().value; // Maps keep insertion order; events arrive oldest first
      map.delete(evicted);
    }
    if (render && sid === state.selected) {
      const list = $("events");
      const item = eventItem(ev);
      // newest first: before the first item with a smaller id
      let before = null;
      for (const child of list.children) {
        if (Number(child.dataset.id) < num(ev.id)) {
          before = child;
          break;
        }
      }
      list.insertBefore(item, before);
      $("timeline-track").append(markerFor(ev));
      if (evicted !== null) {
        for (const x of document.querySelectorAll('[data-id="' + CSS.escape(String(evicted)) + '"]')) x.remove();
      }
      renderTimelineGeometry();
      updateEventCount();
    }
  }

  function eventItem(ev) {
    const tip = "show " + str(ev.event) + " at " + fmtTime(ev.t) + " on the timeline";
    return el(
      "li",
      { class: "event " + kindClass(ev.event) + (ev.alert ? " alert" : ""), "data-id": ev.id, "data-t": num(ev.t) },
      thumbImg(ev.thumbnail, str(ev.event) + " at " + fmtTime(ev.t)),
      el(
        "div",
        { class: "event-body" },
        el(
          "div",
          {},
          el("button", { type: "button", class: "event-time time link", title: tip, onclick: () => showEvent(ev) }, fmtTime(ev.t)),
          " ",
          el("span", { class: "kind event-kind " + kindClass(ev.event) }, str(ev.event))
        ),
        el("div", { class: "event-description" }, str(ev.description)),
        ev.alert ? el("div", { class: "alert-text" }, "alert: " + str(ev.alert)) : null
      )
    );
  }

  function renderEvents() {
    const map = state.events[state.selected];
    const evs = map ? [...map.values()].sort((a, b) => num(b.id) - num(a.id)) : [];
    $("events").replaceChildren(...evs.map(eventItem));
    updateEventCount();
    renderTimeline();
  }

  function updateEventCount() {
    const n = $("events").children.length;
    $("events-count").textContent = n ? "(" + n + ")" : "";
    $("events-empty").hidden = n > 0;
  }

  async function loadEvents(stream, since) {
    let cursor = since || 0;
    for (let page = 0; page < 50; page++) {
      const q = "/events?limit=" + MAX_EVENTS + "&since=" + cursor + (stream === null ? "" : "&stream=" + encodeURIComponent(stream));
      const doc = await api(q);
      const evs = Array.isArray(doc.events) ? doc.events : [];
      for (const ev of evs) {
        addEvent(ev, false);
        cursor = Math.max(cursor, num(ev.id));
      }
      if (evs.length < MAX_EVENTS) break;
    }
  }

  // ------------------------------------------------------------------ live updates (SSE)

  function parseData(msg) {
    try {
      return JSON.parse(msg.data);
    } catch (e) {
      return null;
    }
  }

  function connectEvents() {
    if (state.sse) state.sse.close();
    const es = new EventSource("/events/stream");
    state.sse = es;
    es.addEventListener("open", () => {
      setConnection("live", "ok");
      // catch up on what happened while disconnected (or everything, when the first load failed)
      if (state.sseOpenedOnce || !state.streams.length) resync();
      state.sseOpenedOnce = true;
    });
    es.addEventListener("event", (msg) => {
      const ev = parseData(msg);
      if (ev) addEvent(ev, true);
    });
    es.addEventListener("frame", (msg) => {
      const f = parseData(msg);
      if (!f) return;
      if (f.t !== null && f.t !== undefined) bumpPosition(f.stream, num(f.t));
      const s = state.streams.find((x) => x.id === f.stream);
      if (s && f.frames !== undefined) {
        s.frames = f.frames;
        if (f.t !== null && f.t !== undefined) s.position = f.t;
        renderStatus();
      }
      if (f.stream === state.selected) refreshFrame();
    });
    es.addEventListener("status", (msg) => {
      const doc = parseData(msg);
      if (doc) applyHealth(doc);
      loadMemory();
    });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        // a non-200 answer (e.g. 401) closes the stream for good: find out why, then retry
        setConnection("disconnected", "bad");
        api("/health").then(
          () => setTimeout(connectEvents, 3000),
          (e) => {
            if (e.status !== 401) setTimeout(connectEvents, 5000);
          }
        );
      } else {
        setConnection("reconnecting…", "warn");
      }
    });
  }

  async function resync() {
    try {
      applyHealth(await api("/health"));
      showNotice("");
      await loadMemory();
      await loadEvents(null, state.maxEventId);
      renderEvents();
      refreshFrame();
    } catch (e) {
      // the next reconnect tries again
    }
  }

  // ------------------------------------------------------------------ questions

  let busy = 0;

  function setBusy(on) {
    busy += on ? 1 : -1;
    const b = busy > 0;
    $("ask-busy").hidden = !b;
    $("ask").disabled = b;
    $("ask-image").disabled = b;
    $("answers").setAttribute("aria-busy", b ? "true" : "false");
  }

  function showAskError(text) {
    const e = $("ask-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function ask(body, label) {
    showAskError("");
    setBusy(true);
    try {
      const doc = await api("/ask", body);
      renderAnswers(doc, label);
      return true;
    } catch (e) {
      showAskError(e.status === 401 ? "Not authorized: open the page as /?token=…" : "Error: " + e.message);
      return false;
    } finally {
      setBusy(false);
    }
  }

  function askStreamParam() {
    return state.streams.length > 1 && state.selected !== null ? state.selected : null;
  }

  async function askText(ev) {
    if (ev) ev.preventDefault();
    if (busy) return;
    const q = $("question").value;
    const payload = { question: q };
    const sid = askStreamParam();
    if (sid !== null) payload.stream = sid;
    const ok = await ask({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) }, q);
    if (ok) $("question").select();
  }

  async function askImage() {
    const input = $("ask-image");
    const file = input.files && input.files[0];
    if (!file || busy) return;
    const form = new FormData();
    form.append("image", file, file.name);
    const sid = askStreamParam();
    if (sid !== null) form.append("stream", String(sid));
    await ask({ method: "POST", body: form }, "image: " + file.name);
    input.value = "";
  }

  function renderAnswers(doc, label) {
    const answers = Array.isArray(doc.answers) ? doc.answers : [];
    const question = str(doc.question) || label;
    const group = el(
      "article",
      { class: "qa" },
      el("h3", { class: "qa-question" }, el("span", { class: "muted" }, "Q: "), question)
    );
    if (!answers.length) group.append(el("p", { class: "muted" }, "No answer."));
    for (const a of answers) group.append(answerNode(a));
    $("answers").prepend(group);
  }

  function answerNode(a) {
    const sid = a.stream;
    const meta = [str(a.stream_name) || (sid !== undefined ? streamName(sid) : ""), str(a.kind), str(a.intent)].filter(Boolean);
    if (a.confidence !== undefined && a.confidence !== null && Number.isFinite(Number(a.confidence))) {
      meta.push("confidence " + Math.round(Number(a.confidence) * 100) + "%");
    }
    const moments = Array.isArray(a.moments) ? a.moments : [];
    const list = el("ol", { class: "moments", "aria-label": "Moments" });
    for (const m of moments) {
      const when = fmtMoment(m);
      const li = el(
        "li",
        { class: "moment " + kindClass(m.event), tabindex: "0", role: "button", title: "show " + when + " on the timeline" },
        thumbImg(m.thumbnail, "moment at " + when),
        el(
          "div",
          { class: "moment-body" },
          el("div", {}, el("span", { class: "moment-time time" }, when), " ",
            m.event ? el("span", { class: "kind " + kindClass(m.event) }, str(m.event)) : null),
          el("div", { class: "moment-description" }, str(m.description)),
          el("div", { class: "moment-score muted" }, "score " + num(m.score).toFixed(2))
        )
      );
      li.addEventListener("click", () => highlightMoment(sid, m, li));
      li.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          highlightMoment(sid, m, li);
        }
      });
      list.append(li);
    }
    return el(
      "div",
      { class: "answer", "data-stream": sid },
      el("div", { class: "answer-meta muted" }, meta.join(" · ")),
      el("p", { class: "answer-text" }, str(a.answer)),
      moments.length ? list : null
    );
  }

  // ------------------------------------------------------------------ start

  function selectStream(id) {
    state.selected = id;
    $("stream").value = String(id);
    renderStatus();
    renderEvents();
    frame.pending = false;
    refreshFrame();
    loadEvents(id, 0).then(renderEvents, (e) => showNotice("Could not load events: " + e.message));
  }

  async function start() {
    // The server set the token cookie when the page was opened as /?token=…: keep the token out of the address bar.
    const url = new URL(window.location.href);
    if (url.searchParams.has("token")) {
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    $("ask-form").addEventListener("submit", askText);
    $("ask-image").addEventListener("change", askImage);
    $("stream").addEventListener("change", (e) => selectStream(Number(e.target.value)));
    const img = $("frame");
    img.addEventListener("load", () => frameDone(img.naturalWidth > 0));
    img.addEventListener("error", () => frameDone(false));

    try {
      applyHealth(await api("/health"));
    } catch (e) {
      if (e.status !== 401) {
        showNotice("Cannot reach the server: " + e.message);
        setConnection("offline", "bad");
      }
      if (e.status === 401) return;
    }
    connectEvents();
    await loadMemory();
    refreshFrame();
    try {
      await loadEvents(null, 0);
    } catch (e) {
      if (e.status !== 401) showNotice("Could not load events: " + e.message);
    }
    renderEvents();
  }

  // exposed for tests and the console
  window.streamvid = { fmtTime: fmtTime, fmtMoment: fmtMoment, state: state };

  start();
})();
