/**
 * The reference portal's page: agent status, login, details, registration code, signature.
 * Talks to the portal server (/api/...) and to the eID agent (eid-agent.js).
 */

import * as eid from "/clients/js/eid-agent.js";
import { applyTranslations, chooseLanguage, rememberLanguage, t } from "/i18n.js";

const STEPS = ["login", "details", "code", "sign", "done"];
const $ = (id) => document.getElementById(id);

const page = {
  lang: "en",
  state: { step: "login" },
  agent: null, // last status() result, or null when unreachable
  agentError: null,
  waitingForLocalAccess: false, // the page explains the browser's prompt before it appears
  message: null, // {key, vars} so it re-translates on a language switch
};

// --- server ------------------------------------------------------------------------------

class ServerError extends Error {
  constructor(status, error) {
    super(error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? "unexpected";
    this.data = error ?? {};
  }
}

async function api(path, body) {
  const init = body === undefined
    ? { credentials: "same-origin" }
    : {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
  const response = await fetch(path, init);
  const value = await response.json().catch(() => ({}));
  if (!response.ok) throw new ServerError(response.status, value.error);
  return value;
}

// --- messages ----------------------------------------------------------------------------

const AGENT_ERRORS = {
  [eid.ErrorCode.ERR_WEBEID_USER_CANCELLED]: "errPinCancelled",
  [eid.ErrorCode.ERR_WEBEID_USER_TIMEOUT]: "errTimeout",
  [eid.ErrorCode.ERR_WEBEID_ACTION_TIMEOUT]: "errTimeout",
  [eid.ErrorCode.ERR_EID_PIN_INVALID]: "errPinWrong",
  [eid.ErrorCode.ERR_EID_PIN_BLOCKED]: "errPinBlocked",
  [eid.ErrorCode.ERR_EID_NO_READER]: "errNoReader",
  [eid.ErrorCode.ERR_EID_NO_CARD]: "errNoCard",
  [eid.ErrorCode.ERR_EID_CARD_REMOVED]: "errCardRemoved",
  [eid.ErrorCode.ERR_EID_ORIGIN_NOT_ALLOWED]: "errOriginRefused",
  [eid.ErrorCode.ERR_EID_BUSY]: "errBusy",
  [eid.ErrorCode.ERR_EID_UNSUPPORTED_CARD]: "errUnsupportedCard",
  [eid.ErrorCode.ERR_EID_CERTIFICATE_NOT_FOUND]: "errOtherCard",
  [eid.ErrorCode.ERR_EID_CARD_ERROR]: "errCardError",
  [eid.ErrorCode.ERR_EID_AGENT_UNAVAILABLE]: "agentMissing",
  [eid.ErrorCode.ERR_EID_CONNECTION_LOST]: "agentLost",
  [eid.ErrorCode.ERR_EID_LOCAL_ACCESS_BLOCKED]: "errLocalAccessBlocked",
  [eid.ErrorCode.ERR_EID_CERTIFICATE_UNTRUSTED]: "errCertUntrusted",
};

const SERVER_ERRORS = {
  "auth-failed": "errAuthFailed",
  "not-logged-in": "errNotLoggedIn",
  "wrong-step": "errWrongStep",
  "invalid-input": "errInvalidInput",
  "code-wrong": "errCodeWrong",
  "code-expired": "errCodeExpired",
  "code-locked": "errCodeLocked",
  "code-missing": "errCodeMissing",
  "sign-failed": "errSignFailed",
  "not-same-person": "errNotSamePerson",
};

const FIELD_LABELS = {
  name: "fieldName", birthDate: "fieldBirthDate", email: "fieldEmail", phone: "fieldPhone",
  code: "fieldCode",
};

function showMessage(message) {
  page.message = message;
  renderMessage();
}

function renderMessage() {
  const box = $("message");
  const message = page.message;
  box.hidden = !message;
  if (!message) return;
  box.dataset.code = message.code ?? "";
  box.dataset.key = message.parts[0]?.[0] ?? "";
  box.className = message.kind ?? "error";
  box.textContent = message.parts.map(([key, vars]) => t(page.lang, key, vars)).join(" ");
}

/** Turn any error into plain words (and, after a cancelled PIN, the tries left). */
async function explain(error) {
  if (error instanceof ServerError) {
    const key = SERVER_ERRORS[error.code] ?? "errUnexpected";
    const field = FIELD_LABELS[error.data.field];
    const vars = {
      n: error.data.attemptsLeft, check: error.data.check ?? error.code, message: error.message,
      field: field ? t(page.lang, field) : error.data.field,
    };
    return { code: error.code, parts: [[key, vars]] };
  }
  const key = error?.data?.insecureBlocked ? "agentMissingOrUntrusted" : AGENT_ERRORS[error?.code] ?? "errUnexpected";
  const parts = [[key, { n: error?.triesLeft ?? error?.data?.triesLeft, message: String(error?.message ?? error) }]];
  if (error?.code === eid.ErrorCode.ERR_EID_CARD_ERROR && await cardGone()) {
    return { code: error.code, parts: [["errCardRemoved", {}]] };
  }
  if (error?.code === eid.ErrorCode.ERR_WEBEID_USER_CANCELLED) {
    const left = await pinTriesLeft();
    if (left !== null) parts.push(["errPinTriesLeft", { n: left }]);
  }
  return { code: error?.code ?? "unexpected", parts };
}

/**
 * After a card communication error: was the card pulled out? (The reader may need a moment
 * to notice, so look a few times.)
 */
async function cardGone() {
  for (let attempt = 0; attempt < 8; attempt += 1) {
    try {
      const status = await eid.status();
      if (!(status.readers ?? []).some((reader) => reader.cardPresent)) return true;
    } catch {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
}

/** Tries left when fewer than the maximum (a wrong PIN before the cancel), else null. */
async function pinTriesLeft() {
  try {
    const status = await eid.pinStatus();
    const pin = status.pins?.[0];
    return pin && pin.triesLeft < pin.maxTries ? pin.triesLeft : null;
  } catch {
    return null;
  }
}

function busy(key) {
  const box = $("busy");
  box.hidden = !key;
  box.dataset.key = key ?? "";
  box.textContent = key ? t(page.lang, key) : "";
  for (const button of document.querySelectorAll("main button")) button.disabled = Boolean(key);
}

/** Run one user action: clear the message, show progress, explain failures. */
async function action(work) {
  showMessage(null);
  try {
    await work();
  } catch (error) {
    busy(null);
    showMessage(await explain(error));
    if (error instanceof ServerError && ["not-logged-in", "wrong-step"].includes(error.code)) {
      await refreshState();
    }
  } finally {
    busy(null);
  }
}

// --- agent status ------------------------------------------------------------------------

async function refreshAgent() {
  try {
    page.agent = await eid.status();
    page.agentError = null;
  } catch (error) {
    page.agent = null;
    page.agentError = error;
  }
  renderAgent();
}

/** Which browser's words to use to undo a blocked local-network permission. */
function browserFamily() {
  const ua = navigator.userAgent;
  if (/Firefox\//.test(ua)) return "firefox";
  if (/Chrome\/|Chromium\/|Edg\//.test(ua)) return "chrome";
  return "other";
}

const BLOCKED_HELP = { chrome: "blockedHelpChrome", firefox: "blockedHelpFirefox", other: "blockedHelpOther" };

/** The agent line's state and words for a failed connection. */
function agentProblem(error) {
  switch (error?.code) {
    case eid.ErrorCode.ERR_EID_LOCAL_ACCESS_BLOCKED: return ["blocked", "agentBlocked"];
    case eid.ErrorCode.ERR_EID_CERTIFICATE_UNTRUSTED: return ["untrusted", "agentUntrusted"];
    default:
      return error?.data?.insecureBlocked ? ["missing", "agentMissingOrUntrusted"] : ["missing", "agentMissing"];
  }
}

function renderAgent() {
  const line = $("agent-line");
  const list = $("readers");
  list.replaceChildren();
  const [problem, problemKey] = page.agentError ? agentProblem(page.agentError) : [null, null];
  $("agent-help").hidden = problem !== "missing";
  $("blocked-help").hidden = problem !== "blocked";
  $("untrusted-help").hidden = problem !== "untrusted" && problemKey !== "agentMissingOrUntrusted";
  $("local-access").hidden = !page.waitingForLocalAccess;
  const help = $("blocked-help-text");
  help.dataset.browser = browserFamily();
  help.textContent = t(page.lang, BLOCKED_HELP[browserFamily()]);
  if (page.agent === null) {
    line.dataset.state = problem ?? (page.waitingForLocalAccess ? "ask-first" : "checking");
    line.textContent = t(page.lang, problemKey ?? "agentChecking");
    return;
  }
  line.dataset.state = "running";
  line.dataset.transport = eid.connectedEndpoint()?.secure ? "wss" : "ws";
  line.textContent = t(page.lang, "agentRunning", { version: page.agent.version ?? "" });
  const readers = page.agent.readers ?? [];
  if (readers.length === 0) {
    const item = document.createElement("li");
    item.dataset.state = "no-reader";
    item.textContent = t(page.lang, "noReaders");
    list.append(item);
  }
  for (const reader of readers) {
    const item = document.createElement("li");
    item.dataset.state = reader.cardPresent ? "card" : "no-card";
    const holder = reader.card?.holder;
    const key = !reader.cardPresent ? "readerNoCard" : holder ? "readerCardNamed" : "readerCard";
    item.textContent = t(page.lang, key, { reader: reader.name ?? "", holder });
    list.append(item);
  }
}

/**
 * Connect to the agent, but when the browser would ask the user first (Chrome's local
 * network access prompt), explain the question and wait for the user's click.
 */
async function connectAgent() {
  if (await eid.needsLocalAccessPrompt()) {
    page.waitingForLocalAccess = true;
    renderAgent();
    await new Promise((resolve) => $("connect-agent").addEventListener("click", resolve, { once: true }));
    page.waitingForLocalAccess = false;
  }
  watchAgent();
}

function watchAgent() {
  refreshAgent();
  try {
    eid.onEvent(() => refreshAgent());
  } catch {
    // events are an extra; the poll below keeps the status fresh anyway
  }
  setInterval(refreshAgent, 3000);
}

// --- steps -------------------------------------------------------------------------------

async function refreshState() {
  page.state = await api("/api/state");
  renderState();
}

function renderState() {
  const { step, user, details, account } = page.state;
  for (const name of STEPS) $(`step-${name}`).hidden = name !== step;
  for (const item of document.querySelectorAll(".steps li")) {
    const index = STEPS.indexOf(item.dataset.step);
    item.dataset.status = index < STEPS.indexOf(step) ? "done" : index === STEPS.indexOf(step) ? "current" : "";
  }
  $("logout").hidden = step === "login";
  if (user) $("user-name").textContent = user.name;
  if (step === "details") prefill(details ?? { name: user?.name, birthDate: user?.birthDate });
  if (step === "sign" && details) renderSummary({ details, personId: user?.personId });
  if (step === "done") renderAccount(account);
}

function prefill(values) {
  for (const name of ["name", "birthDate", "email", "phone"]) {
    const input = $(`field-${name}`);
    if (!input.value && values?.[name]) input.value = values[name];
  }
}

function renderList(element, rows) {
  element.replaceChildren();
  for (const [label, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value ?? "";
    element.append(dt, dd);
  }
}

function renderAccount(account) {
  if (!account) return;
  renderList($("account"), [
    [t(page.lang, "accountNumber"), String(account.id)],
    [t(page.lang, "fieldName"), account.name],
    [t(page.lang, "personId"), account.personId],
    [t(page.lang, "fieldBirthDate"), account.birthDate],
    [t(page.lang, "fieldEmail"), account.email],
    [t(page.lang, "fieldPhone"), account.phone],
  ]);
}

/** What will be signed: from the session first, then from the server's exact summary. */
function renderSummary({ details, personId }) {
  renderList($("summary"), [
    [t(page.lang, "fieldName"), details.name],
    [t(page.lang, "personId"), personId],
    [t(page.lang, "fieldBirthDate"), details.birthDate],
    [t(page.lang, "fieldEmail"), details.email],
    [t(page.lang, "fieldPhone"), details.phone],
  ]);
}

function renderHash(prepared) {
  const hash = $("summary-hash");
  hash.hidden = false;
  hash.textContent = t(page.lang, "summaryHash", { hashFunction: prepared.hashFunction, hash: prepared.hash });
}

async function logIn() {
  busy("busyServer");
  const { nonce } = await api("/api/nonce", {});
  busy("busyPin");
  const token = await eid.authenticate(nonce, { lang: page.lang });
  busy("busyServer");
  page.state = await api("/api/login", { token });
  renderState();
}

async function readIdentity() {
  busy("busyConsent");
  const result = await eid.readIdentity({ photo: false, lang: page.lang });
  const identity = result.identity ?? {};
  const name = [identity.givenNames, identity.thirdGivenNameInitial, identity.surname]
    .filter(Boolean).join(" ");
  if (name) $("field-name").value = name;
  if (identity.birthDate) $("field-birthDate").value = identity.birthDate;
  showMessage({ kind: "info", code: "identity-read", parts: [["identityRead", {}]] });
}

async function submitDetails(event) {
  event.preventDefault();
  const form = new FormData($("details-form"));
  busy("busyServer");
  page.state = await api("/api/details", Object.fromEntries(form.entries()));
  renderState();
}

async function submitCode(event) {
  event.preventDefault();
  busy("busyServer");
  page.state = await api("/api/code", { code: $("field-code").value });
  $("field-code").value = "";
  renderState();
}

async function signSummary() {
  busy("busyCard");
  const signing = await eid.getSigningCertificate({ lang: page.lang });
  busy("busyServer");
  const prepared = await api("/api/sign/prepare", {
    certificate: signing.certificate,
    supportedSignatureAlgorithms: signing.supportedSignatureAlgorithms,
  });
  renderSummary({ details: prepared.summary.details, personId: prepared.summary.person.id });
  renderHash(prepared);
  busy("busyPin");
  const signed = await eid.sign(signing.certificate, prepared.hash, prepared.hashFunction,
    { lang: page.lang });
  busy("busyServer");
  page.state = await api("/api/sign/finish", {
    signature: signed.signature, signatureAlgorithm: signed.signatureAlgorithm,
  });
  renderState();
}

async function logOut() {
  await api("/api/logout", {});
  for (const form of document.querySelectorAll("form")) form.reset();
  await refreshState();
}

function setLanguage(lang) {
  page.lang = lang;
  applyTranslations(lang);
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
  }
  renderAgent();
  renderMessage();
  renderState();
}

async function start() {
  const config = await api("/api/config");
  eid.configure(config.agentUrls
    ? { urls: config.agentUrls }
    : { basePort: config.agentBasePort, slots: config.agentSlots });
  for (const button of document.querySelectorAll("button.reload")) {
    button.addEventListener("click", () => location.reload());
  }
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => {
      rememberLanguage(button.dataset.lang);
      setLanguage(button.dataset.lang);
    });
  }
  $("login").addEventListener("click", () => action(logIn));
  $("read-identity").addEventListener("click", () => action(readIdentity));
  $("details-form").addEventListener("submit", (event) => action(() => submitDetails(event)));
  $("code-form").addEventListener("submit", (event) => action(() => submitCode(event)));
  $("sign").addEventListener("click", () => action(signSummary));
  $("logout").addEventListener("click", () => action(logOut));
  page.state = await api("/api/state");
  setLanguage(chooseLanguage(config.lang));
  connectAgent();
  document.body.dataset.ready = "true";
}

start();
