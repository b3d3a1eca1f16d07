/**
 * The simulated phone app: shows the live registration code of this browser's registration
 * (a real portal would send it to the person's own phone) and can ask for a new one.
 */

import { applyTranslations, chooseLanguage, t } from "/i18n.js";

const $ = (id) => document.getElementById(id);
let lang = "en";

async function call(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, { credentials: "same-origin", ...init });
  return { ok: response.ok, value: await response.json().catch(() => ({})) };
}

function show({ ok, value }) {
  const code = ok ? value.code : null;
  $("phone-code").textContent = code ?? "——————";
  $("phone-code").dataset.code = code ?? "";
  $("phone-none").hidden = Boolean(code);
  $("phone-none").textContent = t(lang, ok ? "phoneNone" : "phoneNoRegistration");
  $("phone-new").hidden = !ok;
  $("phone-expiry").textContent = code
    ? t(lang, "phoneValidUntil", { time: new Date(value.expiresAt).toLocaleTimeString(lang) })
    : "";
}

async function refresh() {
  show(await call("/api/phone/code"));
}

async function start() {
  const config = (await call("/api/config")).value;
  lang = chooseLanguage(config.lang);
  applyTranslations(lang);
  $("phone-new").addEventListener("click", async () => show(await call("/api/phone/new", {})));
  await refresh();
  setInterval(refresh, 2000);
  document.body.dataset.ready = "true";
}

start();
