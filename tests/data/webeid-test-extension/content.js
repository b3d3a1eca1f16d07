// Page <-> extension, as the Web eID extension's content script: accept window messages whose
// action starts with "web-eid:" (not our own replies), ack at once, forward to the background,
// post the background's answer back to the page.
"use strict";
const REPLY = /-(ack|success|failure)$|^web-eid:warning$/;
window.addEventListener("message", (event) => {
  const message = event.data;
  if (event.source !== window || !message || typeof message.action !== "string") return;
  if (!message.action.startsWith("web-eid:") || REPLY.test(message.action)) return;
  window.postMessage({ action: `${message.action}-ack` }, "*");
  chrome.runtime.sendMessage(message, (answer) => window.postMessage(answer, "*"));
});
