// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // Submit a filter form when its select changes (the button stays for keyboard and no-JS users).
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
  // Confirm before destructive-looking actions.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  // A chart wider than the screen (a phone) opens at its right end: now, not the oldest point.
  document.querySelectorAll(".chart-figure").forEach((figure) => {
    if (figure.scrollWidth > figure.clientWidth) figure.scrollLeft = figure.scrollWidth;
  });
  // Parts of a page that refresh themselves: <div data-refresh="/url" data-every="30">.
  document.querySelectorAll("[data-refresh]").forEach((region) => {
    const every = Number(region.dataset.every || 30) * 1000;
    setInterval(async () => {
      // Never pull the page from under a keyboard user: wait while focus is inside the region.
      if (region.contains(document.activeElement)) return;
      try {
        const response = await fetch(region.dataset.refresh, { headers: { "X-Fragment": "1" } });
        // Signed out meanwhile (the fetch followed the redirect to the sign-in page): go there.
        if (response.redirected) { window.location.assign(response.url); return; }
        if (response.ok) region.innerHTML = await response.text();
      } catch (error) { /* keep the last good view; the next tick tries again */ }
    }, every);
  });
  // After the confirmations above, so that a draft sees a cancelled submit as cancelled.
  keepDrafts();
  watchSession();
  document.querySelectorAll("form[data-live-ceiling]").forEach(liveMgDay);
});

// ------------------------------------------------------------------ drafts of long forms
// A form marked <form data-keep-draft="key"> keeps what is typed in this tab's sessionStorage.
// When its post is answered by the sign-in page (the session ended meanwhile), the person
// signs in, comes back to the form (next=) and finds their entries restored, to check and save
// with the new page's security token. A successful save clears the draft. Hidden fields,
// passwords and the token are never kept: the new page brings its own.
const DRAFT = "tandem-draft:";
const DRAFT_KEPT_MS = 12 * 3600 * 1000; // the longest a session lasts
const NOT_KEPT = new Set(["hidden", "password", "file", "submit", "button", "reset", "image"]);

function draftKey(form) {
  return DRAFT + (form.dataset.keepDraft || form.getAttribute("action") || window.location.pathname);
}

function readDraft(key) {
  try { return JSON.parse(window.sessionStorage.getItem(key) || "null"); } catch (error) { return null; }
}

function writeDraft(key, draft) {
  try { window.sessionStorage.setItem(key, JSON.stringify(draft)); } catch (error) { /* storage off or full */ }
}

function forgetDraft(key) {
  try { window.sessionStorage.removeItem(key); } catch (error) { /* storage off */ }
}

function draftKeys() {
  const keys = [];
  try {
    for (let i = 0; i < window.sessionStorage.length; i += 1) {
      const key = window.sessionStorage.key(i);
      if (key && key.startsWith(DRAFT)) keys.push(key);
    }
  } catch (error) { /* storage off: no drafts */ }
  return keys;
}

function entriesOf(form) {
  const entries = [];
  for (const field of form.elements) {
    if (!field.name || field.disabled || NOT_KEPT.has(field.type) || field.name === "csrf_token") continue;
    if (field.type === "radio" || field.type === "checkbox") {
      entries.push([field.name, field.value, field.checked]);
    } else if (field.type === "select-multiple") {
      entries.push([field.name, Array.from(field.selectedOptions, (option) => option.value), null]);
    } else {
      entries.push([field.name, field.value, null]);
    }
  }
  return entries;
}

function restoreEntries(form, entries) {
  const checked = new Map();
  const values = new Map(); // name -> values in page order (a name may repeat)
  for (const [name, value, isChecked] of entries) {
    if (isChecked === null) {
      if (!values.has(name)) values.set(name, []);
      values.get(name).push(value);
    } else {
      checked.set(name + "\u0000" + value, isChecked);
    }
  }
  for (const field of form.elements) {
    if (!field.name || field.disabled || NOT_KEPT.has(field.type) || field.name === "csrf_token") continue;
    if (field.type === "radio" || field.type === "checkbox") {
      const was = checked.get(field.name + "\u0000" + field.value);
      if (was !== undefined) field.checked = was;
    } else if (values.has(field.name) && values.get(field.name).length) {
      const value = values.get(field.name).shift();
      if (field.type === "select-multiple") {
        for (const option of field.options) option.selected = value.includes(option.value);
      } else {
        field.value = value;
      }
    }
  }
}

function notice(text, before) {
  const note = document.createElement("p");
  note.className = "notice";
  note.setAttribute("role", "status");
  note.textContent = text;
  before.parentNode.insertBefore(note, before);
  return note;
}

function keepDrafts() {
  const viewer = document.body.dataset.viewer || "";
  const signInForm = document.querySelector('form[action="/login"]');
  const errorPage = document.querySelector("[data-error-page]");
  const forms = Array.from(document.querySelectorAll("form[data-keep-draft]"));
  const here = new Set(forms.map(draftKey));
  for (const key of draftKeys()) {
    const draft = readDraft(key);
    if (!draft || Date.now() - draft.at > DRAFT_KEPT_MS) { forgetDraft(key); continue; }
    if (signInForm) {
      // Sent to sign in with entries unsaved: keep them for the form after signing in.
      if (!draft.signIn) writeDraft(key, { ...draft, signIn: true });
      continue;
    }
    if (!viewer || here.has(key)) continue;
    if (draft.viewer !== viewer) { forgetDraft(key); continue; } // someone else signed in
    // Waiting for its form, or its post failed: kept. Otherwise the post was answered by the
    // next page (saved), or the form was left unsent: a fresh visit starts blank.
    if (!draft.signIn && !errorPage) forgetDraft(key);
  }
  if (signInForm && draftKeys().length) {
    notice("What you typed before your session ended is kept in this tab: after you sign in, " +
      "check it and save.", signInForm);
  }
  for (const form of forms) {
    const key = draftKey(form);
    const draft = readDraft(key);
    if (draft && draft.signIn && draft.viewer === viewer) {
      restoreEntries(form, draft.entries || []);
      writeDraft(key, { ...draft, signIn: false, submitted: false });
      notice("Your entries were restored: check and save.", form);
      form.dispatchEvent(new Event("change", { bubbles: true })); // live totals follow
    } else if (draft && draft.submitted) {
      // The post was answered with this form again (its errors): what was sent is on the page.
      writeDraft(key, { ...draft, submitted: false });
    } else if (draft) {
      forgetDraft(key);
    }
    const keep = (submitted) => writeDraft(key, {
      viewer, at: Date.now(), submitted, signIn: false, entries: entriesOf(form),
    });
    // keyup too: a value chosen by a key press (withdrawal.js) sends no input event.
    ["input", "change", "keyup"].forEach((type) => form.addEventListener(type, () => keep(false)));
    form.addEventListener("submit", (event) => { if (!event.defaultPrevented) keep(true); });
  }
  // Signing out forgets every draft.
  document.querySelectorAll('form[action="/logout"]').forEach((form) => {
    form.addEventListener("submit", () => draftKeys().forEach(forgetDraft));
  });
}

// ------------------------------------------------------------------ the session's idle limit
// <body data-session-left="seconds" data-session-warn="seconds">: a small banner counts down
// the last minutes before the session ends for inactivity, with a button whose one request
// counts as activity. Before warning, the server is asked what is left without counting as
// activity (X-Fragment): another tab may have kept the session alive meanwhile.
function watchSession() {
  const body = document.body;
  const banner = document.getElementById("session-banner");
  if (!banner || body.dataset.sessionLeft === undefined) return;
  const warnMs = Number(body.dataset.sessionWarn) * 1000;
  let endsAt = Date.now() + Number(body.dataset.sessionLeft) * 1000;
  let atLifetime = body.hasAttribute("data-session-at-lifetime");
  let timer = 0;
  let ticker = 0;
  let countdown = null;

  // When the session ends, by the server; null: it has ended; undefined: no answer (offline).
  async function ask(active) {
    try {
      const response = await fetch("/session/alive", {
        headers: active ? {} : { "X-Fragment": "1" },
        redirect: "manual",
        cache: "no-store",
        credentials: "same-origin",
      });
      if (response.type === "opaqueredirect" || response.status === 401) return null;
      if (!response.ok) return undefined;
      const answer = await response.json();
      atLifetime = Boolean(answer.at_lifetime);
      return Date.now() + answer.seconds_left * 1000;
    } catch (error) { return undefined; }
  }

  function clockText(ms) {
    const seconds = Math.max(0, Math.ceil(ms / 1000));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(check, Math.max(0, endsAt - warnMs - Date.now()));
  }

  function hide() {
    window.clearInterval(ticker);
    countdown = null;
    banner.hidden = true;
    banner.replaceChildren();
  }

  async function check() {
    const answer = await ask(false);
    if (answer === null) { ended(); return; }
    if (answer !== undefined) endsAt = answer;
    if (endsAt - Date.now() > warnMs) { hide(); schedule(); return; }
    warn();
  }

  async function staySignedIn() {
    const answer = await ask(true);
    if (answer === null) { ended(); return; }
    if (answer === undefined) return; // no answer: the warning stays, the button too
    endsAt = answer;
    if (endsAt - Date.now() > warnMs) { hide(); schedule(); }
  }

  function warn() {
    if (!countdown) {
      const text = document.createElement("p");
      countdown = document.createElement("strong");
      countdown.className = "countdown";
      countdown.setAttribute("aria-live", "off"); // announced once, not every second
      text.append("Your session ends in ", countdown, atLifetime
        ? ": sessions have a maximum length. Save your work now; you will sign in again."
        : " unless you do something.");
      banner.replaceChildren(text);
      if (!atLifetime) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "primary";
        button.textContent = "Stay signed in";
        button.addEventListener("click", staySignedIn);
        banner.append(button);
      }
      banner.hidden = false;
    }
    countdown.textContent = clockText(endsAt - Date.now());
    window.clearInterval(ticker);
    ticker = window.setInterval(() => {
      const left = endsAt - Date.now();
      if (left > 0) { countdown.textContent = clockText(left); return; }
      window.clearInterval(ticker);
      check();
    }, 1000);
  }

  function ended() {
    window.clearInterval(ticker);
    window.clearTimeout(timer);
    countdown = null;
    const text = document.createElement("p");
    const kept = document.querySelector("form[data-keep-draft]")
      ? " What you typed on this page is kept: sign in again, then check it and save." : "";
    text.textContent = (atLifetime ? "Your session has reached its maximum length."
      : "Your session has ended after a period of inactivity.") + kept;
    const link = document.createElement("a");
    const here = window.location.pathname + window.location.search;
    link.href = "/login?next=" + encodeURIComponent(here) + "&expired=1";
    link.textContent = "Sign in again";
    banner.replaceChildren(text, link);
    banner.hidden = false;
  }

  schedule();
}

// ------------------------------------------------------------------ a dose plan's mg/day
// <form data-live-ceiling data-ceiling-mg-day="80" data-ceiling-mg-dose="" data-per-day="{...}">:
// as the prescriber types, each dose ("<x>_mg" with its "<x>_freq") as mg/day against the
// patient's ceiling, lowered by a program maximum typed in "protocol_max". The server checks
// again when the plan is saved; this only shows it sooner.
function liveMgDay(form) {
  const out = form.querySelector("#live-mg-day");
  if (!out) return;
  let perDay = {};
  try { perDay = JSON.parse(form.dataset.perDay || "{}"); } catch (error) { return; }
  const number = (text) => {
    const value = parseFloat(String(text || "").replace(",", "."));
    return Number.isFinite(value) && value > 0 ? value : null;
  };
  const mg = (value) => String(Math.round(value * 10000) / 10000);
  const ceilingDay = number(form.dataset.ceilingMgDay);
  const ceilingDose = number(form.dataset.ceilingMgDose);
  const doses = Array.from(form.querySelectorAll('input[name$="_mg"]'))
    .map((input) => [input, form.elements.namedItem(input.name.replace(/_mg$/, "_freq"))])
    .filter(([, select]) => select && select.tagName === "SELECT");
  const labelOf = (input) => {
    const label = input.labels && input.labels[0];
    return label ? label.firstChild.textContent.trim() : input.name;
  };

  function update() {
    const protocol = form.elements.namedItem("protocol_max");
    const typedMax = protocol ? number(protocol.value) : null;
    let ceiling = ceilingDay;
    if (typedMax !== null) ceiling = ceiling === null ? typedMax : Math.min(ceiling, typedMax);
    const parts = [];
    const over = [];
    for (const [input, select] of doses) {
      const dose = number(input.value);
      const times = perDay[select.value];
      if (dose === null || !times) continue;
      const day = dose * times;
      parts.push(labelOf(input) + ": " + mg(day) + " mg/day");
      if (ceiling !== null && day > ceiling) over.push(labelOf(input).toLowerCase() + " is above " + mg(ceiling) + " mg/day");
      if (ceilingDose !== null && dose > ceilingDose) over.push(labelOf(input).toLowerCase() + " is above " + mg(ceilingDose) + " mg per dose");
    }
    if (!parts.length) { out.hidden = true; return; }
    let text = parts.join(" · ") + ". ";
    text += ceiling === null ? "No ceiling known for this patient." : "Ceiling " + mg(ceiling) + " mg/day" +
      (ceilingDose !== null ? ", " + mg(ceilingDose) + " mg per dose." : ".");
    if (over.length) text += " Over the ceiling: the " + over.join("; the ") + ". The plan would be refused.";
    out.textContent = text;
    out.classList.toggle("over", over.length > 0);
    out.hidden = false;
  }
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
}
