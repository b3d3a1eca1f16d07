// The background half of the Web eID extension, as far as the native host sees it: a new
// connectNative("eu.webeid") port per action, wait <= 5 s for {version}, send exactly one
// {command, arguments} with the origin computed from the sender's URL (never from the page),
// wait for one reply, disconnect. Replies and errors go back in web-eid.js's shapes.
"use strict";
const HANDSHAKE_TIMEOUT = 5000;
const QUIT_TIMEOUT = 2000;

function nativeAction(command, args, replyTimeout) {
  return new Promise((resolve) => {
    const port = chrome.runtime.connectNative("eu.webeid");
    const result = { version: null, reply: null, error: null, timings: {} };
    const started = performance.now();
    let state = "handshake";
    let timer = setTimeout(() => finish({ code: "ERR_WEBEID_NATIVE_UNAVAILABLE", message: "native application handshake timeout, 5000ms" }), HANDSHAKE_TIMEOUT);
    function finish(error) {
      if (state === "done") return;
      state = "done";
      clearTimeout(timer);
      if (error) result.error = error;
      result.timings.total = performance.now() - started;
      port.disconnect();
      resolve(result);
    }
    port.onDisconnect.addListener(() => finish(result.reply ? null : {
      code: "ERR_WEBEID_NATIVE_UNAVAILABLE",
      message: "connection to the native app was closed" + (chrome.runtime.lastError ? ": " + chrome.runtime.lastError.message : ""),
    }));
    port.onMessage.addListener((message) => {
      if (state === "handshake") {
        if (message && message.error) return finish(message.error);
        if (!message || !message.version) return finish({ code: "ERR_WEBEID_NATIVE_UNAVAILABLE", message: "expected a version" });
        result.version = message.version;
        result.timings.version = performance.now() - started;
        clearTimeout(timer);
        state = "command";
        timer = setTimeout(() => finish({ code: "ERR_WEBEID_USER_TIMEOUT", message: "user timeout" }), replyTimeout);
        port.postMessage({ command, arguments: args });
        return;
      }
      if (state === "command") {
        result.reply = message;
        finish(message && message.error ? message.error : null);
      }
    });
  });
}

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  const origin = new URL(sender.url).origin;
  const lang = message.options && message.options.lang;
  const timeout = (message.options && message.options.userInteractionTimeout) || 120000;
  const withLang = (args) => (lang ? { ...args, lang } : args);
  let command, args, replyTimeout = timeout;
  switch (message.action) {
    case "web-eid:status": command = "quit"; args = {}; replyTimeout = QUIT_TIMEOUT; break;
    case "web-eid:authenticate": command = "authenticate"; args = withLang({ challengeNonce: message.challengeNonce, origin }); break;
    case "web-eid:get-signing-certificate": command = "get-signing-certificate"; args = withLang({ origin }); break;
    case "web-eid:sign": command = "sign"; args = withLang({ hash: message.hash, hashFunction: message.hashFunction, certificate: message.certificate, origin }); break;
    case "web-eid:raw": command = message.command; args = message.arguments; break;  // test hook: any frame
    default: sendResponse({ action: message.action + "-failure", error: { code: "ERR_WEBEID_UNKNOWN_ERROR", message: "unknown action" } }); return false;
  }
  nativeAction(command, args, replyTimeout).then((result) => {
    const base = { nativeVersion: result.version, timings: result.timings };
    if (result.error) {
      sendResponse({ action: message.action + "-failure", error: result.error, ...base });
    } else if (message.action === "web-eid:status") {
      sendResponse({ action: "web-eid:status-success", nativeApp: result.version, reply: result.reply, ...base });
    } else {
      sendResponse({ action: message.action + "-success", ...result.reply, ...base });
    }
  });
  return true;
});
