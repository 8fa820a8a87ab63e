"use strict";

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function problemDetail(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  for (const key of ["detail", "title"]) {
    if (body && typeof body[key] === "string" && body[key].trim()) return body[key];
  }
  return `The server answered ${response.status} ${response.statusText}`.trim();
}

const KEY_STORE = "tinyzoo-api-key";
let keyInMemory = "";

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || keyInMemory;
  } catch {
    return keyInMemory;
  }
}

async function api(path, options = {}) {
  const key = apiKey();
  if (key) options = { ...options, headers: { ...(options.headers ?? {}), Authorization: `Bearer ${key}` } };
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("Could not reach the server. Is it still running?", 0);
  }
  if (response.status === 401) $("key-form").hidden = false;
  if (!response.ok) throw new ApiError(await problemDetail(response), response.status);
  return response;
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  keyInMemory = $("api-key").value.trim();
  try {
    sessionStorage.setItem(KEY_STORE, keyInMemory);
  } catch {
    /* storage refused: the key lasts until the page is reloaded */
  }
  $("key-form").hidden = true;
  loadModels();
});

function postJson(path, body, { signal, accept = "application/json" } = {}) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: accept },
    body: JSON.stringify(body),
    signal,
  });
}

function showError(element, err) {
  element.textContent = err instanceof ApiError ? err.message : `Something went wrong: ${err.message || err}`;
  element.hidden = false;
}

function hideError(element) {
  element.hidden = true;
  element.textContent = "";
}

const percent = (p, digits = 1) => `${(p * 100).toFixed(digits)} %`;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderBars(list, predictions, best) {
  list.replaceChildren(
    ...predictions.map(({ label, probability }) => {
      const item = el("li", label === best ? "best" : "");
      const track = el("span", "bar-track");
      const fill = el("span", "bar-fill");
      fill.style.width = `${(probability * 100).toFixed(2)}%`;
      track.append(fill);
      item.append(el("span", "bar-label", label), track, el("span", "bar-value", percent(probability)));
      return item;
    }),
  );
}

/* Explanations: shared by the digit and the name */

const FOR_RGB = [214, 40, 40];
const AGAINST_RGB = [37, 99, 235];

const isPressed = (button) => button.getAttribute("aria-pressed") === "true";
const signed = (x, digits = 2) => `${x < 0 ? "−" : "+"}${Math.abs(x).toFixed(digits)}`;

function hideWhy(kind) {
  $(`${kind}-why`).hidden = true;
  $(`${kind}-why-status`).textContent = "";
  hideError($(`${kind}-why-error`));
}

function showWhy(kind, caption) {
  hideError($(`${kind}-why-error`));
  $(`${kind}-why-status`).textContent = "";
  $(`${kind}-why-caption`).textContent = caption;
  $(`${kind}-why`).hidden = false;
}

function whyFailed(kind, err) {
  $(`${kind}-why-status`).textContent = "";
  $(`${kind}-why`).hidden = true;
  showError($(`${kind}-why-error`), err);
}

function closure(data, start) {
  const change = data.logit - data.baseline_logit;
  const error = Math.abs(data.delta).toFixed(2);
  return `Together they make up the ${change.toFixed(2)} its score rose from ${start} (give or take ${error}).`;
}

/* Digits */

const pad = $("pad");
const ctx = pad.getContext("2d");
const digitModel = $("digit-model");
const photo = $("photo");
const digitError = $("digit-error");
const STROKE = 22;
let digitSource = null;
let lastPoint = null;
let drawn = false;
let digitSeq = 0;
let predictTimer = 0;
let lastDigit = null;
const digitExplain = $("digit-explain");

function resetPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
}

function resetDigitResult(hint = "Draw a digit or upload a photo.") {
  $("digit-result").textContent = "–";
  $("digit-confidence").textContent = hint;
  $("digit-bars").replaceChildren();
  $("digit-seen-figure").hidden = true;
  lastDigit = null;
  hideWhy("digit");
}

function padPoint(event) {
  const rect = pad.getBoundingClientRect();
  return [
    ((event.clientX - rect.left) * pad.width) / rect.width,
    ((event.clientY - rect.top) * pad.height) / rect.height,
  ];
}

function strokeTo(point) {
  ctx.beginPath();
  ctx.moveTo(...lastPoint);
  ctx.lineTo(...point);
  ctx.stroke();
  lastPoint = point;
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  clearTimeout(predictTimer);
  if (digitSource !== "pad") {
    resetPad();
    photo.value = "";
    $("photo-name").textContent = "";
    digitSource = "pad";
  }
  Object.assign(ctx, { strokeStyle: "#fff", lineWidth: STROKE, lineCap: "round", lineJoin: "round" });
  lastPoint = padPoint(event);
  strokeTo(lastPoint);
  drawn = true;
});

pad.addEventListener("pointermove", (event) => {
  if (!lastPoint) return;
  const coalesced = event.getCoalescedEvents?.() ?? [];
  for (const e of coalesced.length ? coalesced : [event]) strokeTo(padPoint(e));
});

function endStroke() {
  if (!lastPoint) return;
  lastPoint = null;
  predictTimer = setTimeout(classifyCurrent, 300);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// The service reduces a 280 px drawing by a whole factor, 3, to the size it works at: the page
// sends it that way, as the request's body, one grey byte per pixel (an 8-bit BMP, 10 KB), not
// the canvas's RGBA PNG (each 3 x 3 block's mean, as the service's reduction takes it; the
// strokes are white on black, so the red channel is the grey).
const REDUCE = 3;

function padBitmap() {
  const side = Math.floor(pad.width / REDUCE);
  const width = side * REDUCE;
  const rgba = ctx.getImageData(0, 0, width, width).data;
  const rowBytes = (side + 3) & ~3;
  const offset = 14 + 40 + 256 * 4; // file header, info header, grey palette
  const bytes = new Uint8Array(offset + rowBytes * side);
  const view = new DataView(bytes.buffer);
  bytes.set([0x42, 0x4d]); // "BM"
  view.setUint32(2, bytes.length, true);
  view.setUint32(10, offset, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, side, true);
  view.setInt32(22, side, true); // rows bottom-up
  view.setUint16(26, 1, true);
  view.setUint16(28, 8, true);
  view.setUint32(34, rowBytes * side, true);
  view.setUint32(46, 256, true);
  for (let i = 0; i < 256; i++) view.setUint32(54 + i * 4, i * 0x010101, true);
  for (let y = 0; y < side; y++) {
    const row = offset + (side - 1 - y) * rowBytes;
    for (let x = 0; x < side; x++) {
      let sum = 0;
      for (let dy = 0; dy < REDUCE; dy++) {
        const start = ((y * REDUCE + dy) * width + x * REDUCE) * 4;
        for (let dx = 0; dx < REDUCE; dx++) sum += rgba[start + dx * 4];
      }
      bytes[row + x] = Math.round(sum / (REDUCE * REDUCE));
    }
  }
  return bytes;
}

function currentImage() {
  if (digitSource === "pad" && drawn) return Promise.resolve({ body: padBitmap(), type: "image/bmp" });
  if (digitSource instanceof File) return Promise.resolve({ file: digitSource });
  return Promise.resolve(null);
}

// A drawing goes as the body itself; a photo as the file of a form, with its name.
function upload(image) {
  const headers = { Accept: "application/json" };
  if (!image.file) return { method: "POST", body: image.body, headers: { ...headers, "Content-Type": image.type } };
  const form = new FormData();
  form.append("file", image.file, image.file.name);
  return { method: "POST", body: form, headers };
}

async function classifyCurrent() {
  const seq = ++digitSeq;
  const image = await currentImage();
  if (!image || seq !== digitSeq) return;
  const query = new URLSearchParams({ model: digitModel.value, top_k: "10", debug: "true" });
  $("digit-confidence").textContent = "Reading…";
  try {
    const response = await api(`/digit?${query}`, upload(image));
    const data = await response.json();
    if (seq !== digitSeq) return;
    hideError(digitError);
    $("digit-result").textContent = String(data.digit);
    $("digit-confidence").textContent = `${percent(data.probability)} sure (${data.model})`;
    const byDigit = [...data.predictions].sort((a, b) => Number(a.label) - Number(b.label));
    renderBars($("digit-bars"), byDigit, String(data.digit));
    $("digit-seen").src = data.image;
    $("digit-seen-figure").hidden = false;
    lastDigit = { seq, image };
    if (isPressed(digitExplain)) explainDigit(seq, image);
  } catch (err) {
    if (seq !== digitSeq) return;
    resetDigitResult("");
    showError(digitError, err);
  }
}

function usePhoto(file) {
  if (!file) return;
  clearTimeout(predictTimer);
  digitSource = file;
  $("photo-name").textContent = file.name;
  resetPad();
  createImageBitmap(file)
    .then((bitmap) => {
      if (digitSource !== file) return;
      const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
      const [w, h] = [bitmap.width * scale, bitmap.height * scale];
      ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    })
    .catch(() => {});
  classifyCurrent();
}

$("clear").addEventListener("click", () => {
  clearTimeout(predictTimer);
  digitSeq++;
  digitSource = null;
  photo.value = "";
  $("photo-name").textContent = "";
  resetPad();
  resetDigitResult();
  hideError(digitError);
});

async function explainDigit(seq, image) {
  const query = new URLSearchParams({ model: digitModel.value, top_k: "1" });
  $("digit-why-status").textContent = "Explaining…";
  try {
    const response = await api(`/digit/explain?${query}`, upload(image));
    const data = await response.json();
    if (seq !== digitSeq || !isPressed(digitExplain)) return;
    const picture = $("digit-why-image");
    picture.src = data.overlay;
    picture.alt =
      `The 28 by 28 input with its ink coloured: red where it made the model more sure of ${data.digit}, ` +
      "blue where it made it less sure; stronger colour, more evidence.";
    showWhy("digit", `Red ink made it a ${data.digit}, blue ink spoke against. ${closure(data, "blank paper")}`);
  } catch (err) {
    if (seq === digitSeq) whyFailed("digit", err);
  }
}

digitExplain.addEventListener("click", () => {
  const on = !isPressed(digitExplain);
  digitExplain.setAttribute("aria-pressed", String(on));
  if (!on) hideWhy("digit");
  else if (lastDigit && lastDigit.seq === digitSeq) explainDigit(digitSeq, lastDigit.image);
});

digitModel.addEventListener("change", classifyCurrent);
photo.addEventListener("change", () => usePhoto(photo.files[0]));

const digitsSection = $("digits");
digitsSection.addEventListener("dragover", (event) => {
  event.preventDefault();
  digitsSection.classList.add("dragging");
});
digitsSection.addEventListener("dragleave", (event) => {
  if (!digitsSection.contains(event.relatedTarget)) digitsSection.classList.remove("dragging");
});
digitsSection.addEventListener("drop", (event) => {
  event.preventDefault();
  digitsSection.classList.remove("dragging");
  usePhoto(event.dataTransfer.files[0]);
});

resetPad();
resetDigitResult();

/* Names */

const surname = $("surname");
const nameError = $("name-error");
const nameExplain = $("name-explain");
let nameSeq = 0;
let nameTimer = 0;
let lastName = null;

async function classifyName() {
  clearTimeout(nameTimer);
  const seq = ++nameSeq;
  const name = surname.value;
  lastName = null;
  if (!name.trim()) {
    $("name-normalized").textContent = "";
    $("name-bars").replaceChildren();
    hideError(nameError);
    hideWhy("name");
    return;
  }
  try {
    const data = await (await postJson("/classify-name", { name, top_k: 5 })).json();
    if (seq !== nameSeq) return;
    hideError(nameError);
    $("name-normalized").textContent = `The model read “${data.normalized}”.`;
    renderBars($("name-bars"), data.predictions, data.predictions[0].label);
    lastName = { seq, name };
    if (isPressed(nameExplain)) explainName(seq, name);
  } catch (err) {
    if (seq !== nameSeq) return;
    $("name-normalized").textContent = "";
    $("name-bars").replaceChildren();
    hideWhy("name");
    showError(nameError, err);
  }
}

function shade(value, scale) {
  const strength = scale > 0 ? Math.min(1, Math.abs(value) / scale) : 0;
  const [r, g, b] = value < 0 ? AGAINST_RGB : FOR_RGB;
  return [`rgba(${r}, ${g}, ${b}, ${(0.85 * strength).toFixed(3)})`, strength];
}

async function explainName(seq, name) {
  $("name-why-status").textContent = "Explaining…";
  try {
    const data = await (await postJson("/classify-name/explain", { name, top_k: 1 })).json();
    if (seq !== nameSeq || !isPressed(nameExplain)) return;
    const scale = Math.max(...data.characters.map((c) => Math.abs(c.attribution)));
    $("name-chars").replaceChildren(
      ...data.characters.map(({ char, attribution }) => {
        const [background, strength] = shade(attribution, scale);
        const letter = el("span", strength > 0.55 ? "char strong" : "char", char);
        letter.style.background = background;
        letter.title = `${char === " " ? "space" : char}: ${signed(attribution)}`;
        return letter;
      }),
    );
    const most = [...data.characters]
      .filter((c) => c.attribution > 0)
      .sort((a, b) => b.attribution - a.attribution)
      .slice(0, 3)
      .map((c) => `${c.char === " " ? "space" : c.char} ${signed(c.attribution)}`);
    const lead = `Each letter of “${data.normalized}” shaded by how much it counted for ${data.label}`;
    showWhy("name", `${lead}${most.length ? ` (most: ${most.join(", ")})` : ""}. ${closure(data, "a name of spaces")}`);
  } catch (err) {
    if (seq === nameSeq) whyFailed("name", err);
  }
}

nameExplain.addEventListener("click", () => {
  const on = !isPressed(nameExplain);
  nameExplain.setAttribute("aria-pressed", String(on));
  if (!on) hideWhy("name");
  else if (lastName && lastName.seq === nameSeq) explainName(nameSeq, lastName.name);
});

surname.addEventListener("input", () => {
  clearTimeout(nameTimer);
  nameTimer = setTimeout(classifyName, 250);
});
surname.addEventListener("keydown", (event) => {
  if (event.key === "Enter") classifyName();
});

/* Generation */

const temperature = $("temperature");
const generateError = $("generate-error");
const generateStatus = $("generate-status");
const story = $("story");
const storyText = $("story-text");
const stopButton = $("stop");
let generation = null;

temperature.addEventListener("input", () => {
  $("temperature-value").textContent = Number(temperature.value).toFixed(1);
});

function parseEvent(block) {
  const event = { type: "message", data: [] };
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const field = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") event.data.push(value);
  }
  return { type: event.type, data: event.data.join("\n") };
}

async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      yield parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function seedValue() {
  const raw = $("seed").value.trim();
  return raw === "" ? null : Number(raw);
}

async function generate() {
  generation?.abort();
  const controller = new AbortController();
  generation = controller;
  const lengthRaw = $("length").value.trim();
  const body = {
    prompt: $("prompt").value,
    max_chars: lengthRaw === "" ? null : Number(lengthRaw),
    temperature: Number(temperature.value),
    seed: seedValue(),
    stream: true,
  };
  hideError(generateError);
  $("story-prompt").textContent = body.prompt;
  storyText.textContent = "";
  story.setAttribute("aria-busy", "true");
  stopButton.disabled = false;
  generateStatus.textContent = "Generating…";
  let count = 0;
  let finished = false;
  try {
    const response = await postJson("/char-rnn/generate", body, {
      signal: controller.signal,
      accept: "text/event-stream",
    });
    for await (const event of serverEvents(response)) {
      if (generation !== controller) return;
      if (event.type === "chunk") {
        const { text } = JSON.parse(event.data);
        storyText.append(text);
        count += [...text].length;
        generateStatus.textContent = `${count} characters…`;
        story.scrollTop = story.scrollHeight;
      } else if (event.type === "done") {
        finished = true;
      }
    }
    generateStatus.textContent = finished
      ? `${count} characters generated.`
      : `The stream ended early, after ${count} characters.`;
  } catch (err) {
    if (generation !== controller) return;
    if (err.name === "AbortError") {
      generateStatus.textContent = `Stopped after ${count} characters.`;
    } else {
      generateStatus.textContent = "";
      if (!count) $("story-prompt").textContent = "";
      showError(generateError, err);
    }
  } finally {
    if (generation === controller) {
      generation = null;
      stopButton.disabled = true;
      story.removeAttribute("aria-busy");
    }
  }
}

$("generate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  generate();
});
stopButton.addEventListener("click", () => generation?.abort());

$("transduce-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("transduce-error");
  const result = $("transduce-result");
  try {
    const data = await (await postJson("/char-rnn/transduce", { text: $("transduce-text").value })).json();
    hideError(error);
    const steps = data.steps.map((s) => `${s.input}→${s.output} ${percent(s.probability, 0)}`);
    result.textContent = `${data.output}   (${steps.join(", ")})`;
  } catch (err) {
    result.textContent = "";
    showError(error, err);
  }
});

/* Model cards */

function headline(metrics) {
  if (typeof metrics.test_accuracy === "number") {
    const parts = [`${percent(metrics.test_accuracy, 2)} accuracy`];
    if (typeof metrics.test_top3_accuracy === "number") parts.push(`top-3 ${percent(metrics.test_top3_accuracy, 2)}`);
    const examples = metrics.test_examples ? ` on ${metrics.test_examples.toLocaleString("en")} test examples` : "";
    return parts.join(", ") + examples;
  }
  if (typeof metrics.test_nats_per_char === "number") {
    const split = metrics.test_split ? ` on the ${metrics.test_split}` : "";
    return `${metrics.test_nats_per_char.toFixed(3)} nats/char${split}`;
  }
  if (typeof metrics.predicted === "string") return `“${metrics.input}” → “${metrics.predicted}”`;
  return "—";
}

function provenance(data) {
  const files = Object.entries(data?.sha256 ?? {});
  if (!files.length) return document.createTextNode(data?.text || "—");
  const details = el("details");
  details.append(el("summary", "", `${data.dir}: ${files.length} file${files.length > 1 ? "s" : ""}`));
  const list = el("ul", "files");
  for (const [file, sha] of files) {
    const item = el("li");
    const hash = el("code", "", `sha256 ${sha.slice(0, 12)}…`);
    hash.title = sha;
    item.append(el("code", "", file), " ", hash);
    list.append(item);
  }
  details.append(list);
  return details;
}

async function loadModels(attempt = 0) {
  const error = $("models-error");
  try {
    const { models } = await (await api("/models", { headers: { Accept: "application/json" } })).json();
    hideError(error);
    $("model-rows").replaceChildren(
      ...models.map((card) => {
        const row = el("tr");
        const link = el("a", "", card.name);
        link.href = `/models/${encodeURIComponent(card.name)}`;
        const name = el("th");
        name.scope = "row";
        name.append(link);
        const data = el("td");
        data.append(provenance(card.data));
        row.append(
          name,
          el("td", "", card.task),
          el("td", "num", card.num_parameters.toLocaleString("en")),
          el("td", "", headline(card.metrics ?? {})),
          data,
        );
        const headings = document.querySelectorAll("#models thead th");
        [...row.children].forEach((cell, i) => (cell.dataset.label = headings[i].textContent));
        return row;
      }),
    );
    if (models.length) $("models-device").textContent = `Running on ${models[0].device}.`;
  } catch (err) {
    showError(error, err);
    if (err instanceof ApiError && err.status === 503 && attempt < 60) {
      setTimeout(() => loadModels(attempt + 1), 1000);
    }
  }
}

loadModels();
