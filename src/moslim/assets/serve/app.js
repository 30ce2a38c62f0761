// The moslim page: one slider per objective in each of two settings, answers streamed side by side,
// and the reward model's level for each objective beside each answer. Plain JS, no build step.
"use strict";

const state = { objectives: [], model: null, settings: [] };
const $ = (selector, root = document) => root.querySelector(selector);

function headers() {
  const key = localStorage.getItem("moslim-api-key") || $("#api-key").value;
  const out = { "Content-Type": "application/json" };
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (response.status === 401) $("#key-box").hidden = false;
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

// -- sliders -------------------------------------------------------------------------------------
function buildSetting(letter, index) {
  const node = $("#setting-template").content.firstElementChild.cloneNode(true);
  node.dataset.setting = letter;
  $("h2", node).textContent = `Setting ${letter.toUpperCase()}`;
  const sliders = $(".sliders", node);
  for (const objective of state.objectives) {
    const maxLevel = objective.levels.length - 1;
    const row = document.createElement("div");
    row.className = "objective unnamed";
    row.dataset.objective = objective.name;
    const id = `${letter}-${objective.name}`;
    row.innerHTML = `
      <div class="head">
        <label><input type="checkbox" class="named"> ${objective.name}</label>
        <span class="level">any</span>
      </div>
      <input type="range" id="${id}" min="0" max="${maxLevel}" step="1" value="${index === 0 ? 0 : maxLevel}"
             aria-label="${objective.name} level, setting ${letter.toUpperCase()}">
      <p class="description"></p>`;
    $("label", row).title = objective.description;  // set as text: descriptions come from YAML
    const slider = $("input[type=range]", row);
    const named = $(".named", row);
    slider.addEventListener("input", () => { named.checked = true; refresh(row, objective); });
    named.addEventListener("change", () => refresh(row, objective));
    sliders.appendChild(row);
    refresh(row, objective);
  }
  return node;
}

function refresh(row, objective) {
  const named = $(".named", row).checked;
  const level = Number($("input[type=range]", row).value);
  row.classList.toggle("unnamed", !named);
  $(".level", row).textContent = named ? `level ${level} of 0-${objective.levels.length - 1}` : "any";
  $(".description", row).textContent = named ? objective.levels[level] : "not named: any level";
}

function preferences(node) {
  const out = {};
  for (const row of node.querySelectorAll(".objective")) {
    if ($(".named", row).checked) out[row.dataset.objective] = Number($("input[type=range]", row).value);
  }
  return out;
}

// -- asking --------------------------------------------------------------------------------------
async function ask(node, question) {
  const answer = $(".answer", node);
  const status = $(".status", node);
  answer.textContent = "";
  node.dataset.chunks = "0";  // streamed pieces received, for the browser test
  delete node.dataset.done;
  $(".levels", node).hidden = true;
  $(".reward", node).textContent = "";
  status.textContent = "waiting…";
  const asked = preferences(node);
  const body = {
    model: state.model, stream: true, preferences: asked,
    messages: [{ role: "user", content: question }],
    max_tokens: Number($("#max-tokens").value), temperature: Number($("#temperature").value),
  };
  const response = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify(body) });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/^data: /, "");
      buffer = buffer.slice(end + 2);
      if (line === "[DONE]") { node.dataset.done = "1"; continue; }
      const chunk = JSON.parse(line);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.moslim) {
        const { system_message: system, user_suffix: suffix } = chunk.moslim;
        $(".system pre", node).textContent = suffix ? `${system}\n\n(closing the user's turn)\n${suffix}` : system;
      }
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          answer.textContent += choice.delta.content;
          node.dataset.chunks = String(Number(node.dataset.chunks || 0) + 1);
          status.textContent = "streaming…";
        }
        if (choice.finish_reason) status.textContent = `done (${choice.finish_reason})`;
        if (choice.moslim) showLevels(node, choice.moslim, asked);
      }
    }
  }
}

function showLevels(node, scored, asked) {
  const body = $(".levels tbody", node);
  body.innerHTML = "";
  for (const objective of state.objectives) {
    const name = objective.name;
    const level = scored.levels[name];
    const probs = scored.probs[name];
    const target = asked[name];
    const row = document.createElement("tr");
    row.dataset.objective = name;
    const verdict = target === undefined ? "" : level === target ? ' <span class="hit">✓</span>' : ' <span class="miss">✗</span>';
    const bars = probs.map((p, j) => {
      const classes = [j === level ? "top" : "", j === target ? "target" : ""].join(" ");
      return `<span class="${classes}" style="height:${Math.max(4, Math.round(p * 100))}%" title="level ${j}: ${p.toFixed(2)}"></span>`;
    }).join("");
    row.innerHTML = `<td>${name}</td><td>${target === undefined ? "any" : target}</td>
      <td class="rm-level">${level}${verdict}</td><td><div class="bars">${bars}</div></td>`;
    body.appendChild(row);
  }
  $(".levels", node).hidden = false;
  $(".reward", node).textContent = scored.reward === null ? "nothing asked: no reward"
    : `mapped reward ${scored.reward.toFixed(3)} · probability of the asked levels ${scored.target_prob.toFixed(2)}`;
}

async function askBoth() {
  const question = $("#question").value.trim() || $("#question").placeholder;
  const button = $("#ask");
  button.disabled = true;
  showError("");
  try {
    const runs = state.settings.map((node) => ask(node, question));
    const results = await Promise.allSettled(runs);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) showError(failed.reason.message);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  try {
    const info = await (await api("/v1/objectives")).json();
    state.objectives = info.objectives;
    state.model = info.model;
    $("#model").textContent = info.model
      ? `model ${info.model}${info.reward_model ? " · reward model loaded" : " · no reward model"}`
      : "no policy loaded: this server only scores";
    $("#max-tokens").value = info.defaults.max_tokens;
    $("#max-tokens").max = info.defaults.max_tokens_cap;
    $("#temperature").value = info.defaults.temperature;
    const main = $("#settings");
    main.innerHTML = "";
    state.settings = ["a", "b"].map((letter, i) => main.appendChild(buildSetting(letter, i)));
    $("#ask").disabled = !info.model;
    document.body.dataset.ready = "1";
  } catch (err) {
    showError(`${err.message}${$("#key-box").hidden ? "" : " (enter the API key, then reload)"}`);
  }
}

$("#ask").addEventListener("click", askBoth);
$("#api-key").addEventListener("change", (e) => { localStorage.setItem("moslim-api-key", e.target.value); start(); });
start();
