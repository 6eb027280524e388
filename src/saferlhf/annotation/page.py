"""The annotation page: one self-contained HTML document (inline style and script, nothing fetched
but this server's ``api/state`` and ``api/label``).

One pair at a time: the prompt, answers A (``response_0``) and B (``response_1``) side by side with a
safe / unsafe flag under each, then the two Safe RLHF questions asked separately: Q1 which answer is
more helpful, Q2 which is more harmless. Every click is POSTed at once; the selection shown is the
one the server saved (a failed save shows "NOT saved" in red and leaves the old selection).
Previous / Next move between pairs (also the arrow keys), Skip marks the pair skipped and moves on.
Model text is inserted as text (``textContent``), never as HTML.

For tests, ``document.body.dataset`` carries ``ready`` (state loaded), ``pending`` (saves in flight),
``saves`` (saves finished, successful or not) and ``index`` (the pair shown).
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>saferlhf - label pairs</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #1d1d1d; }
  header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd; padding: 8px 20px;
           display: flex; gap: 18px; align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 17px; margin: 0; }
  main { max-width: 1200px; margin: 0 auto; padding: 12px 20px 40px; }
  h2 { font-size: 14px; margin: 0 0 6px; text-transform: uppercase; letter-spacing: .04em; color: #555; }
  .box { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 14px; margin-bottom: 12px; }
  .text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 45vh; overflow: auto; }
  .role { font-weight: 600; }
  .answers { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
  @media (max-width: 800px) { .answers { grid-template-columns: 1fr; } }
  .row { margin-top: 10px; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
  .question p { margin: 0 0 4px; }
  .hint { color: #666; font-size: 13px; }
  button { font: inherit; padding: 5px 16px; border: 1px solid #999; border-radius: 5px; background: #fff;
           cursor: pointer; }
  button:disabled { opacity: .4; cursor: default; }
  button.selected { background: #1f5fbf; border-color: #1f5fbf; color: #fff; }
  button.selected[data-value="false"] { background: #b3261e; border-color: #b3261e; }
  nav { display: flex; gap: 10px; justify-content: flex-end; }
  #status.ok { color: #1b6e2b; } #status.busy { color: #666; } #status.error { color: #b3261e; font-weight: 600; }
  #pair-state { color: #1b6e2b; font-weight: 600; }
  #all-done { background: #e5f3e8; border-color: #9ccaa6; }
</style>
</head>
<body data-ready="false" data-pending="0" data-saves="0">
<header>
  <h1>Label answer pairs</h1>
  <span id="progress">loading...</span>
  <span id="pair-state"></span>
  <span id="status" role="status"></span>
</header>
<main>
  <div id="all-done" class="box" hidden>Every pair is labelled. You can close this page; the labels are in
    <code id="labels-file"></code>.</div>
  <section class="box"><h2>Prompt</h2><div id="prompt" class="text"></div></section>
  <div class="answers">
    <section class="box"><h2>Answer A</h2><div id="response-0" class="text"></div>
      <div class="row">Is answer A safe?
        <button type="button" data-field="is_response_0_safe" data-value="true">safe</button>
        <button type="button" data-field="is_response_0_safe" data-value="false">unsafe</button></div>
    </section>
    <section class="box"><h2>Answer B</h2><div id="response-1" class="text"></div>
      <div class="row">Is answer B safe?
        <button type="button" data-field="is_response_1_safe" data-value="true">safe</button>
        <button type="button" data-field="is_response_1_safe" data-value="false">unsafe</button></div>
    </section>
  </div>
  <section class="box question">
    <p><b>Q1. Which answer is more helpful?</b></p>
    <p class="hint">Helpfulness only: which does more of what the user asked. Ignore harm here; Q2 asks about it.</p>
    <div class="row">
      <button type="button" data-field="better_response_id" data-value="0">A</button>
      <button type="button" data-field="better_response_id" data-value="1">B</button></div>
  </section>
  <section class="box question">
    <p><b>Q2. Which answer is more harmless?</b></p>
    <p class="hint">Harm only: which is less likely to cause harm. Ignore helpfulness here.</p>
    <div class="row">
      <button type="button" data-field="safer_response_id" data-value="0">A</button>
      <button type="button" data-field="safer_response_id" data-value="1">B</button></div>
  </section>
  <nav>
    <button type="button" id="prev">&larr; Previous</button>
    <button type="button" id="skip">Skip</button>
    <button type="button" id="next">Next &rarr;</button>
  </nav>
</main>
<script>
"use strict";
const FIELDS = ["better_response_id", "safer_response_id", "is_response_0_safe", "is_response_1_safe"];
const state = {pairs: [], labels: [], index: 0, pending: 0, saves: 0};
let queue = Promise.resolve();
const $ = (id) => document.getElementById(id);

function parseValue(text) { return text === "true" ? true : text === "false" ? false : Number(text); }
function isComplete(label) { return !!label && FIELDS.every((f) => label[f] !== null && label[f] !== undefined); }
function setStatus(text, kind) { $("status").textContent = text; $("status").className = kind || ""; }
function setPending(delta) { state.pending += delta; document.body.dataset.pending = String(state.pending); }

function showPrompt(prompt) {
  const box = $("prompt");
  box.replaceChildren();
  const turns = typeof prompt === "string" ? [{role: "user", content: prompt}] : prompt;
  for (const turn of turns) {
    const div = document.createElement("div");
    if (turns.length > 1) {
      const who = document.createElement("span");
      who.className = "role";
      who.textContent = turn.role + ": ";
      div.append(who);
    }
    div.append(document.createTextNode(turn.content));
    box.append(div);
  }
}

function render() {
  const n = state.pairs.length;
  const done = state.labels.filter(isComplete).length;
  $("progress").textContent = n ? `Pair ${state.index + 1} of ${n} (${done} of ${n} labelled)` : "No pairs in the file";
  $("all-done").hidden = !(n && done === n);
  if (!n) return;
  const pair = state.pairs[state.index], label = state.labels[state.index] || {};
  showPrompt(pair.prompt);
  $("response-0").textContent = pair.response_0;
  $("response-1").textContent = pair.response_1;
  for (const button of document.querySelectorAll("button[data-field]")) {
    const selected = label[button.dataset.field] === parseValue(button.dataset.value);
    button.classList.toggle("selected", selected);
    button.setAttribute("aria-pressed", String(selected));
  }
  $("pair-state").textContent = isComplete(label) ? "labelled" : (label.skipped ? "skipped" : "");
  $("prev").disabled = state.index === 0;
  $("next").disabled = state.index === n - 1;
  document.body.dataset.index = String(state.index);
}

function send(update, index) {
  setPending(1);
  setStatus("saving...", "busy");
  queue = queue.then(async () => {
    const reply = await fetch("api/label", {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify(update)});
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new Error(body.error || `HTTP ${reply.status}`);
    state.labels[index] = body.label;
    setStatus(`saved (${body.progress.labelled} of ${body.progress.total} labelled)`, "ok");
  }).catch((error) => {
    setStatus(`NOT saved: ${error.message}`, "error");
  }).finally(() => {
    state.saves += 1;
    document.body.dataset.saves = String(state.saves);
    setPending(-1);
    render();
  });
}

function go(index) {
  state.index = Math.max(0, Math.min(state.pairs.length - 1, index));
  render();
  window.scrollTo(0, 0);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-field]");
  if (!button || !state.pairs.length) return;
  const pair = state.pairs[state.index];
  send({id: pair.id, [button.dataset.field]: parseValue(button.dataset.value)}, state.index);
});
$("prev").addEventListener("click", () => go(state.index - 1));
$("next").addEventListener("click", () => go(state.index + 1));
$("skip").addEventListener("click", () => {
  if (!state.pairs.length) return;
  send({id: state.pairs[state.index].id, skipped: true}, state.index);
  go(state.index + 1);
});
document.addEventListener("keydown", (event) => {
  if (event.key === "ArrowLeft") go(state.index - 1);
  if (event.key === "ArrowRight") go(state.index + 1);
});

async function load() {
  try {
    const reply = await fetch("api/state");
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    const body = await reply.json();
    Object.assign(state, {pairs: body.pairs, labels: body.labels, index: body.start});
    $("labels-file").textContent = body.labels_file;
    render();
    setStatus(`answers are saved to ${body.labels_file} as you click`, "ok");
    document.body.dataset.ready = "true";
  } catch (error) {
    setStatus(`could not load the pairs: ${error.message}`, "error");
  }
}
load();
</script>
</body>
</html>
"""
