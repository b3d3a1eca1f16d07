/**
 * eid-agent.js — talk to the local eid-agent from a web page. No dependencies.
 *
 * The API follows web-eid.js (status, authenticate, getSigningCertificate, sign; same
 * result fields and error codes where the meaning matches) and adds readIdentity,
 * pinStatus, changePin and card events. Transport: JSON-RPC 2.0 over a WebSocket to the agent
 * on loopback: wss://127.0.0.1:24848+2k preferred, ws://127.0.0.1:24847+2k as fallback, for the
 * agent slots k = 0..7 (one slot per desktop user on shared machines; see docs/protocol.md).
 *
 *   import { authenticate, UserCancelledError } from "./eid-agent.js";
 *   const token = await authenticate(nonceFromServer, { lang: "fr" });
 *
 * @module eid-agent
 */

export const VERSION = "0.1.0";
export const DEFAULT_URL = "ws://127.0.0.1:24847";
/** ws port of slot 0; slot k listens on ws BASE+2k and wss BASE+2k+1. */
export const DEFAULT_BASE_PORT = 24847;
export const DEFAULT_SLOTS = 8;
const ENDPOINT_KEY = "eid-agent.endpoint";
export const DEFAULT_USER_INTERACTION_TIMEOUT = 120000; // ms, as web-eid.js

/** String error codes (error.code). Names from web-eid.js where the meaning matches. */
export const ErrorCode = Object.freeze({
  // web-eid.js codes
  ERR_WEBEID_ACTION_TIMEOUT: "ERR_WEBEID_ACTION_TIMEOUT",
  ERR_WEBEID_USER_TIMEOUT: "ERR_WEBEID_USER_TIMEOUT",
  ERR_WEBEID_USER_CANCELLED: "ERR_WEBEID_USER_CANCELLED",
  ERR_WEBEID_NATIVE_INVALID_ARGUMENT: "ERR_WEBEID_NATIVE_INVALID_ARGUMENT",
  ERR_WEBEID_NATIVE_FATAL: "ERR_WEBEID_NATIVE_FATAL",
  ERR_WEBEID_MISSING_PARAMETER: "ERR_WEBEID_MISSING_PARAMETER",
  ERR_WEBEID_UNKNOWN_ERROR: "ERR_WEBEID_UNKNOWN_ERROR",
  // eid-agent codes
  ERR_EID_AGENT_UNAVAILABLE: "ERR_EID_AGENT_UNAVAILABLE",
  ERR_EID_LOCAL_ACCESS_BLOCKED: "ERR_EID_LOCAL_ACCESS_BLOCKED",
  ERR_EID_CERTIFICATE_UNTRUSTED: "ERR_EID_CERTIFICATE_UNTRUSTED",
  ERR_EID_CONNECTION_LOST: "ERR_EID_CONNECTION_LOST",
  ERR_EID_ORIGIN_NOT_ALLOWED: "ERR_EID_ORIGIN_NOT_ALLOWED",
  ERR_EID_NO_READER: "ERR_EID_NO_READER",
  ERR_EID_NO_CARD: "ERR_EID_NO_CARD",
  ERR_EID_CARD_REMOVED: "ERR_EID_CARD_REMOVED",
  ERR_EID_PIN_INVALID: "ERR_EID_PIN_INVALID",
  ERR_EID_PIN_BLOCKED: "ERR_EID_PIN_BLOCKED",
  ERR_EID_BUSY: "ERR_EID_BUSY",
  ERR_EID_UNSUPPORTED_CARD: "ERR_EID_UNSUPPORTED_CARD",
  ERR_EID_CERTIFICATE_NOT_FOUND: "ERR_EID_CERTIFICATE_NOT_FOUND",
  ERR_EID_NOT_SUPPORTED: "ERR_EID_NOT_SUPPORTED",
  ERR_EID_CARD_ERROR: "ERR_EID_CARD_ERROR",
  ERR_EID_TOO_MANY_REQUESTS: "ERR_EID_TOO_MANY_REQUESTS",
  ERR_EID_PIN_CHANGE_REQUIRED: "ERR_EID_PIN_CHANGE_REQUIRED",
  ERR_EID_PARSE_ERROR: "ERR_EID_PARSE_ERROR",
  ERR_EID_INVALID_REQUEST: "ERR_EID_INVALID_REQUEST",
  ERR_EID_METHOD_NOT_FOUND: "ERR_EID_METHOD_NOT_FOUND",
});

/** Base class of every error this module rejects with. */
export class EidAgentError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string, data?: object, rpcCode?: number}} [details]
   */
  constructor(message, details = {}) {
    super(message);
    this.name = new.target.name;
    this.code = details.code ?? new.target.code ?? ErrorCode.ERR_WEBEID_UNKNOWN_ERROR;
    this.data = details.data ?? {};
    this.rpcCode = details.rpcCode;
  }
}

function defineError(name, code) {
  const cls = {
    [name]: class extends EidAgentError {},
  }[name];
  cls.code = code;
  return cls;
}

export const ActionTimeoutError = defineError("ActionTimeoutError", ErrorCode.ERR_WEBEID_ACTION_TIMEOUT);
export const UserTimeoutError = defineError("UserTimeoutError", ErrorCode.ERR_WEBEID_USER_TIMEOUT);
export const UserCancelledError = defineError("UserCancelledError", ErrorCode.ERR_WEBEID_USER_CANCELLED);
export const NativeInvalidArgumentError = defineError(
  "NativeInvalidArgumentError", ErrorCode.ERR_WEBEID_NATIVE_INVALID_ARGUMENT);
export const NativeFatalError = defineError("NativeFatalError", ErrorCode.ERR_WEBEID_NATIVE_FATAL);
export const MissingParameterError = defineError(
  "MissingParameterError", ErrorCode.ERR_WEBEID_MISSING_PARAMETER);
export const UnknownError = defineError("UnknownError", ErrorCode.ERR_WEBEID_UNKNOWN_ERROR);
export const AgentUnavailableError = defineError("AgentUnavailableError", ErrorCode.ERR_EID_AGENT_UNAVAILABLE);
/** The browser's local-network permission (Chrome/Edge "Local network access") blocks this site. */
export const LocalAccessBlockedError = defineError(
  "LocalAccessBlockedError", ErrorCode.ERR_EID_LOCAL_ACCESS_BLOCKED);
/** The agent answers over ws:// but its wss:// certificate is not trusted by this browser. */
export const CertificateUntrustedError = defineError(
  "CertificateUntrustedError", ErrorCode.ERR_EID_CERTIFICATE_UNTRUSTED);
export const ConnectionLostError = defineError("ConnectionLostError", ErrorCode.ERR_EID_CONNECTION_LOST);
export const OriginNotAllowedError = defineError("OriginNotAllowedError", ErrorCode.ERR_EID_ORIGIN_NOT_ALLOWED);
export const NoReaderError = defineError("NoReaderError", ErrorCode.ERR_EID_NO_READER);
export const NoCardError = defineError("NoCardError", ErrorCode.ERR_EID_NO_CARD);
export const CardRemovedError = defineError("CardRemovedError", ErrorCode.ERR_EID_CARD_REMOVED);
export const PinBlockedError = defineError("PinBlockedError", ErrorCode.ERR_EID_PIN_BLOCKED);
export const BusyError = defineError("BusyError", ErrorCode.ERR_EID_BUSY);
export const UnsupportedCardError = defineError("UnsupportedCardError", ErrorCode.ERR_EID_UNSUPPORTED_CARD);
export const CertificateNotFoundError = defineError(
  "CertificateNotFoundError", ErrorCode.ERR_EID_CERTIFICATE_NOT_FOUND);
export const NotSupportedError = defineError("NotSupportedError", ErrorCode.ERR_EID_NOT_SUPPORTED);
export const CardError = defineError("CardError", ErrorCode.ERR_EID_CARD_ERROR);
export const TooManyRequestsError = defineError("TooManyRequestsError", ErrorCode.ERR_EID_TOO_MANY_REQUESTS);
export const PinChangeRequiredError = defineError("PinChangeRequiredError", ErrorCode.ERR_EID_PIN_CHANGE_REQUIRED);
/** The agent did not understand the request (a bug in this library or an old agent). */
export const ProtocolError = defineError("ProtocolError", ErrorCode.ERR_EID_INVALID_REQUEST);

/** Wrong PIN; `triesLeft` says how many tries remain before the PIN is blocked. */
export class PinInvalidError extends EidAgentError {
  static code = ErrorCode.ERR_EID_PIN_INVALID;
  get triesLeft() {
    return this.data.triesLeft;
  }
}

const ERROR_CLASSES = new Map([
  [ErrorCode.ERR_WEBEID_ACTION_TIMEOUT, ActionTimeoutError],
  [ErrorCode.ERR_WEBEID_USER_TIMEOUT, UserTimeoutError],
  [ErrorCode.ERR_WEBEID_USER_CANCELLED, UserCancelledError],
  [ErrorCode.ERR_WEBEID_NATIVE_INVALID_ARGUMENT, NativeInvalidArgumentError],
  [ErrorCode.ERR_WEBEID_NATIVE_FATAL, NativeFatalError],
  [ErrorCode.ERR_WEBEID_MISSING_PARAMETER, MissingParameterError],
  [ErrorCode.ERR_EID_AGENT_UNAVAILABLE, AgentUnavailableError],
  [ErrorCode.ERR_EID_LOCAL_ACCESS_BLOCKED, LocalAccessBlockedError],
  [ErrorCode.ERR_EID_CERTIFICATE_UNTRUSTED, CertificateUntrustedError],
  [ErrorCode.ERR_EID_CONNECTION_LOST, ConnectionLostError],
  [ErrorCode.ERR_EID_ORIGIN_NOT_ALLOWED, OriginNotAllowedError],
  [ErrorCode.ERR_EID_NO_READER, NoReaderError],
  [ErrorCode.ERR_EID_NO_CARD, NoCardError],
  [ErrorCode.ERR_EID_CARD_REMOVED, CardRemovedError],
  [ErrorCode.ERR_EID_PIN_INVALID, PinInvalidError],
  [ErrorCode.ERR_EID_PIN_BLOCKED, PinBlockedError],
  [ErrorCode.ERR_EID_BUSY, BusyError],
  [ErrorCode.ERR_EID_UNSUPPORTED_CARD, UnsupportedCardError],
  [ErrorCode.ERR_EID_CERTIFICATE_NOT_FOUND, CertificateNotFoundError],
  [ErrorCode.ERR_EID_NOT_SUPPORTED, NotSupportedError],
  [ErrorCode.ERR_EID_CARD_ERROR, CardError],
  [ErrorCode.ERR_EID_TOO_MANY_REQUESTS, TooManyRequestsError],
  [ErrorCode.ERR_EID_PIN_CHANGE_REQUIRED, PinChangeRequiredError],
  [ErrorCode.ERR_EID_PARSE_ERROR, ProtocolError],
  [ErrorCode.ERR_EID_INVALID_REQUEST, ProtocolError],
  [ErrorCode.ERR_EID_METHOD_NOT_FOUND, ProtocolError],
]);

/** Rebuild the typed error from a JSON-RPC error object. */
export function errorFromRpc(error) {
  const data = error && typeof error.data === "object" && error.data !== null ? error.data : {};
  const code = typeof data.code === "string" ? data.code : ErrorCode.ERR_WEBEID_UNKNOWN_ERROR;
  const cls = ERROR_CLASSES.get(code) ?? UnknownError;
  const message = (error && typeof error.message === "string" && error.message) || code;
  return new cls(message, { code, data, rpcCode: error?.code });
}

function requireParam(value, name) {
  if (value === undefined || value === null || value === "") {
    throw new MissingParameterError(`${name} is missing`, { data: { parameter: name } });
  }
  return value;
}

/** `options` as the agent takes them: only userInteractionTimeout (ms) and lang. */
function actionOptions(options) {
  const result = {};
  if (options?.userInteractionTimeout !== undefined) {
    result.userInteractionTimeout = options.userInteractionTimeout;
  }
  if (options?.lang !== undefined) result.lang = options.lang;
  return result;
}

/** Permission names under which browsers expose local-network access (Chromium 14x+). */
const LOCAL_ACCESS_PERMISSIONS = ["loopback-network", "local-network-access", "local-network"];

/**
 * The browser's local-network permission for this page: "granted", "prompt" (the browser
 * will ask the user on the first connection), "denied" (the user clicked Block, or policy),
 * or "unsupported" (no such permission: Firefox, Safari, older Chromium).
 * @returns {Promise<"granted" | "prompt" | "denied" | "unsupported">}
 */
export async function localAccessState() {
  const permissions = globalThis.navigator?.permissions;
  if (!permissions?.query) return "unsupported";
  for (const name of LOCAL_ACCESS_PERMISSIONS) {
    try {
      const result = await permissions.query({ name });
      if (result?.state) return result.state;
    } catch {
      // unknown permission name in this browser: try the next one
    }
  }
  return "unsupported";
}

/**
 * True when the first connection will make the browser ask the user (explain it first):
 * the permission is "prompt", the page is not itself on loopback, and the engine asks for
 * WebSockets. Chromium reports "prompt" on loopback pages too. Firefox also reports
 * "prompt" for loopback-network but exempts WebSockets from its check (unless the pref
 * network.lna.websocket.enabled is set), so no prompt appears there.
 */
export async function needsLocalAccessPrompt() {
  const ua = globalThis.navigator?.userAgent ?? "";
  if (/Firefox\//.test(ua)) return false;
  // A page on loopback itself (a portal under development) is never asked about loopback.
  if (isLoopbackHost(globalThis.location?.hostname ?? "")) return false;
  return (await localAccessState()) === "prompt";
}

function isLoopbackHost(host) {
  return host === "localhost" || host.endsWith(".localhost") || /^127\./.test(host) ||
    host === "[::1]" || host === "::1";
}

/**
 * The endpoints the client tries, in order of preference: for each slot k, wss on
 * basePort+2k+1 then ws on basePort+2k (only wss, or only ws, with `transport`).
 * An explicit `url` (or `urls`) replaces the slot range.
 */
export function agentEndpoints(options = {}) {
  const given = options.urls ?? (options.url ? [options.url] : null);
  if (given) {
    // One agent at given URLs (e.g. its wss:// and ws:// pair): one slot.
    return given.map((url) => ({ url, secure: url.startsWith("wss:"), slot: 0 }));
  }
  const host = options.host ?? "127.0.0.1";
  const base = options.basePort ?? DEFAULT_BASE_PORT;
  const slots = options.slots ?? DEFAULT_SLOTS;
  const transport = options.transport ?? "auto";
  const endpoints = [];
  for (let slot = 0; slot < slots; slot += 1) {
    if (transport !== "ws") endpoints.push({ url: `wss://${host}:${base + 2 * slot + 1}`, secure: true, slot });
    if (transport !== "wss") endpoints.push({ url: `ws://${host}:${base + 2 * slot}`, secure: false, slot });
  }
  return endpoints;
}

function rememberedEndpoint() {
  try {
    return globalThis.sessionStorage?.getItem(ENDPOINT_KEY) ?? null;
  } catch {
    return null; // storage disabled (sandboxed frame, privacy settings)
  }
}

function rememberEndpoint(url) {
  try {
    globalThis.sessionStorage?.setItem(ENDPOINT_KEY, url);
  } catch {
    // not remembered: the next page scans the slots again
  }
}

/** Would the browser block ws:// from this page as mixed content (WebKit/Safari)? */
function pageBlocksInsecureSockets() {
  const ua = globalThis.navigator?.userAgent ?? "";
  const https = globalThis.location?.protocol === "https:";
  const webkit = /AppleWebKit/.test(ua) && !/Chrome|Chromium|Edg\//.test(ua);
  return https && webkit;
}

/**
 * A connection to the agent. Connects on first use, reconnects with backoff while event
 * listeners exist, and fails fast with a typed error when nothing answers.
 */
export class EidAgent {
  /**
   * @param {import("./eid-agent").EidAgentOptions} [options]
   */
  constructor(options = {}) {
    this.transport = options.transport ?? "auto";
    // With transport "wss", ws:// is still probed: an answer there (never used) shows that the
    // agent runs and only its certificate is the problem.
    this.endpoints = agentEndpoints(
      this.transport === "wss" ? { ...options, transport: "auto" } : options);
    /** The URL of the open connection (or the first endpoint before connecting). */
    this.url = this.endpoints[0]?.url ?? DEFAULT_URL;
    /** The endpoint in use: {url, secure, slot}, and `certificateTrusted` when known. */
    this.endpoint = null;
    this.connectTimeout = options.connectTimeout ?? 3000;
    this.secureGrace = options.secureGrace ?? 400;
    this.promptTimeout = options.promptTimeout ?? DEFAULT_USER_INTERACTION_TIMEOUT;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.timeoutMargin = options.timeoutMargin ?? 5000;
    this.reconnectDelay = options.reconnectDelay ?? 500;
    this.maxReconnectDelay = options.maxReconnectDelay ?? 30000;
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    this._socket = null;
    this._opening = null;
    this._nextId = 1;
    this._pending = new Map();
    this._listeners = new Set();
    this._subscribed = false;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._closed = false;
  }

  /** Agent version; readers and cards only once this site is approved. */
  status() {
    return this._call("status", undefined, this.requestTimeout);
  }

  /** Web eID authentication token (format web-eid:1.0) for the server's challenge nonce. */
  async authenticate(challengeNonce, options) {
    requireParam(challengeNonce, "challengeNonce");
    return this._call("authenticate", { challengeNonce, options: actionOptions(options) },
      this._interactive(options, 1));
  }

  /** The signing certificate and the algorithms the card signs with. */
  async getSigningCertificate(options) {
    return this._call("getSigningCertificate", { options: actionOptions(options) },
      this._interactive(options, 2));
  }

  /** Sign a hash (base64) with the key of `certificate` (base64 DER). */
  async sign(certificate, hash, hashFunction, options) {
    requireParam(certificate, "certificate");
    requireParam(hash, "hash");
    requireParam(hashFunction, "hashFunction");
    return this._call("sign", { certificate, hash, hashFunction, options: actionOptions(options) },
      this._interactive(options, 2));
  }

  /** Identity, address and (unless `photo: false`) photo, after the user agrees. */
  async readIdentity(options = {}) {
    const params = { options: actionOptions(options) };
    if (options.photo !== undefined) params.photo = options.photo;
    return this._call("readIdentity", params, this._interactive(options, 2));
  }

  /** PIN tries left, without spending any. */
  async pinStatus(options) {
    return this._call("pinStatus", undefined, this._interactive(options, 1));
  }

  /** Ask the user (in the agent's own dialog) to change a PIN (`pinName` on multi-PIN cards). */
  async changePin(options = {}) {
    const params = { options: actionOptions(options) };
    if (options.pinName !== undefined) params.pinName = options.pinName;
    return this._call("changePin", params, this._interactive(options, 1));
  }

  /**
   * Receive reader and card events. Returns a function that removes the listener.
   * @param {(event: object) => void} callback
   */
  onEvent(callback) {
    if (typeof callback !== "function") throw new MissingParameterError("callback is missing");
    this._listeners.add(callback);
    if (!this._subscribed) this._subscribe().catch(() => this._scheduleReconnect());
    return () => {
      this._listeners.delete(callback);
      if (this._listeners.size === 0 && this._subscribed) {
        this._subscribed = false;
        this._call("unsubscribe", undefined, this.requestTimeout).catch(() => {});
      }
    };
  }

  /** Close the connection and stop reconnecting; pending calls reject with ConnectionLostError. */
  close() {
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    this._listeners.clear();
    this._socket?.close(1000);
  }

  // --- internals -------------------------------------------------------------------

  _interactive(options, factor) {
    const ms = options?.userInteractionTimeout ?? DEFAULT_USER_INTERACTION_TIMEOUT;
    return factor * ms + this.timeoutMargin;
  }

  async _subscribe() {
    this._subscribed = true;
    try {
      await this._call("subscribe", undefined, this.requestTimeout);
      this._attempt = 0;
    } catch (error) {
      this._subscribed = false;
      throw error;
    }
  }

  _scheduleReconnect() {
    if (this._closed || this._listeners.size === 0 || this._reconnectTimer) return;
    const delay = Math.min(this.maxReconnectDelay, this.reconnectDelay * 2 ** this._attempt);
    this._attempt += 1;
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._subscribed && this._listeners.size > 0) {
        this._subscribe().catch(() => this._scheduleReconnect());
      }
    }, delay);
  }

  _connect() {
    if (this._socket && this._socket.readyState === 1) return Promise.resolve(this._socket);
    if (this._opening) return this._opening;
    this._closed = false;
    this._opening = this._open().then((socket) => {
      if (socket.readyState !== 1) {
        throw new ConnectionLostError("The connection to the eID agent closed right after it opened");
      }
      socket.onmessage = (event) => this._onMessage(event.data);
      socket.onclose = (event) => this._onClose(socket, event);
      this._socket = socket;
      return socket;
    }).finally(() => {
      this._opening = null;
    });
    return this._opening;
  }

  /** The last good endpoint first (alone), then every endpoint at once. */
  async _open() {
    const remembered = this.endpoints.find((e) => e.url === rememberedEndpoint());
    const permission = await localAccessState();
    // While the browser asks the user, sockets stay CONNECTING: give the user time.
    const timeout = permission === "prompt" ? this.promptTimeout : this.connectTimeout;
    if (remembered && this.endpoints.length > 1) {
      const quick = await this._race([remembered], timeout);
      if (quick.socket) return this._won(quick);
    }
    const result = await this._race(this.endpoints, timeout);
    if (result.socket) return this._won(result);
    throw await this._failure(result);
  }

  _won({ socket, endpoint, certificateTrusted }) {
    this.endpoint = { ...endpoint, certificateTrusted };
    this.url = endpoint.url;
    rememberEndpoint(endpoint.url);
    return socket;
  }

  /**
   * Open every endpoint in parallel; other users' agents refuse the handshake, so the
   * first socket that opens is this user's agent. A secure socket wins at once; a plain one
   * waits `secureGrace` ms for the wss:// of its slot. Resolves to {socket, endpoint,
   * certificateTrusted} or, when nothing opened, to {outcomes} for the diagnosis.
   */
  _race(endpoints, timeout) {
    return new Promise((resolve) => {
      const outcomes = new Map(); // url -> "open" | "closed" | "blocked" | "timeout"
      const sockets = new Map();
      let plain = null; // {socket, endpoint} waiting for its slot's wss
      let graceTimer = null;
      let done = false;
      const finish = (result) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(graceTimer);
        for (const [url, socket] of sockets) {
          if (socket !== result.socket) {
            socket.onopen = socket.onclose = socket.onerror = null;
            if (!outcomes.has(url)) outcomes.set(url, "timeout");
            try { socket.close(); } catch { /* already closed */ }
          }
        }
        if (result.socket) result.socket.onopen = result.socket.onerror = null;
        resolve({ ...result, outcomes });
      };
      const secureSibling = (slot) => endpoints.find((e) => e.secure && e.slot === slot);
      const settleIfAllDone = () => {
        if (outcomes.size < endpoints.length) return;
        if (plain) {
          const sibling = secureSibling(plain.endpoint.slot);
          finish({ ...plain, certificateTrusted: sibling ? false : undefined });
        } else {
          finish({ socket: null });
        }
      };
      const timer = setTimeout(() => {
        if (plain) finish({ ...plain, certificateTrusted: undefined });
        else finish({ socket: null });
      }, timeout);
      for (const endpoint of endpoints) {
        if (!endpoint.secure && this.transport !== "ws" && pageBlocksInsecureSockets()) {
          outcomes.set(endpoint.url, "blocked"); // mixed content: do not even try
          continue;
        }
        let socket;
        try {
          socket = new this.WebSocketImpl(endpoint.url);
        } catch {
          outcomes.set(endpoint.url, "blocked"); // SecurityError: mixed content, bad port
          continue;
        }
        sockets.set(endpoint.url, socket);
        socket.onerror = () => {};
        socket.onopen = () => {
          outcomes.set(endpoint.url, "open");
          if (endpoint.secure) {
            finish({ socket, endpoint, certificateTrusted: true });
            return;
          }
          if (this.transport === "wss") {
            settleIfAllDone(); // a plain socket only proves the agent runs
            return;
          }
          if (plain) return; // an earlier plain socket waits already
          plain = { socket, endpoint };
          const sibling = secureSibling(endpoint.slot);
          if (!sibling || outcomes.get(sibling.url) === "closed") {
            finish({ ...plain, certificateTrusted: sibling ? false : undefined });
            return;
          }
          graceTimer = setTimeout(() => finish({ ...plain, certificateTrusted: undefined }),
            this.secureGrace);
        };
        socket.onclose = () => {
          if (!outcomes.has(endpoint.url)) outcomes.set(endpoint.url, "closed");
          if (plain && endpoint.secure && endpoint.slot === plain.endpoint.slot) {
            finish({ ...plain, certificateTrusted: false });
            return;
          }
          settleIfAllDone();
        };
      }
      settleIfAllDone();
    });
  }

  /** Nothing usable opened: say why, as precisely as the browser lets a page know. */
  async _failure({ outcomes }) {
    const permission = await localAccessState();
    const tried = [...outcomes.keys()];
    const data = { permission, tried };
    const waited = [...outcomes.values()].includes("timeout");
    if (permission === "denied" || (permission === "prompt" && waited)) {
      return new LocalAccessBlockedError(
        permission === "denied"
          ? "The browser blocks this site from reaching apps on this device (local network " +
            "access). Allow it in the site settings, then reload the page."
          : "The browser is still asking whether this site may reach apps on this device. " +
            "Answer Allow in the browser's prompt.",
        { data });
    }
    const plainOpened = this.endpoints.some((e) => !e.secure && outcomes.get(e.url) === "open");
    const blocked = this.endpoints.some((e) => !e.secure && outcomes.get(e.url) === "blocked");
    if (plainOpened) {
      // Only with transport "wss": the agent answers over ws:// but not over wss://.
      return new CertificateUntrustedError(
        "The eID agent runs, but this browser does not trust its certificate (wss://). " +
        "Reinstall the eID agent, or trust its local certificate authority.", { data });
    }
    data.insecureBlocked = blocked;
    return new AgentUnavailableError(
      `The eID agent is not reachable (${tried.join(", ")}): it is not running, or it refused ` +
      "this site" + (blocked
        ? ", or this browser does not trust its certificate (this page may only use wss://)"
        : "") + ". Install or start the eID agent.", { data });
  }

  _onClose(socket, event) {
    if (this._socket === socket) {
      this._socket = null;
      this._subscribed = false;
    }
    for (const [id, pending] of this._pending) {
      if (pending.socket !== socket) continue;
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new ConnectionLostError(
        `The connection to the eID agent closed (${event.code}) before it answered`));
    }
    this._scheduleReconnect();
  }

  _onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message?.method === "event" && message.params) {
      for (const listener of [...this._listeners]) {
        try {
          listener(message.params);
        } catch (error) {
          setTimeout(() => { throw error; });
        }
      }
      return;
    }
    const pending = this._pending.get(message?.id);
    if (!pending) return;
    this._pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.error) pending.reject(errorFromRpc(message.error));
    else pending.resolve(message.result);
  }

  async _call(method, params, timeout) {
    const socket = await this._connect();
    const id = this._nextId++;
    const request = { jsonrpc: "2.0", id, method };
    if (params !== undefined) request.params = params;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ActionTimeoutError(`The eID agent did not answer ${method} in time`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, socket });
      socket.send(JSON.stringify(request));
    });
  }
}

let defaultAgent = null;

/** Replace the shared agent used by the module functions (e.g. another `url`). */
export function configure(options = {}) {
  defaultAgent?.close();
  defaultAgent = new EidAgent(options);
  return defaultAgent;
}

function agent() {
  return defaultAgent ?? configure();
}

export const status = () => agent().status();
export const authenticate = (challengeNonce, options) => agent().authenticate(challengeNonce, options);
export const getSigningCertificate = (options) => agent().getSigningCertificate(options);
export const sign = (certificate, hash, hashFunction, options) =>
  agent().sign(certificate, hash, hashFunction, options);
export const readIdentity = (options) => agent().readIdentity(options);
export const pinStatus = (options) => agent().pinStatus(options);
export const changePin = (options) => agent().changePin(options);
export const onEvent = (callback) => agent().onEvent(callback);
/** The shared agent's endpoint in use ({url, secure, slot, certificateTrusted}), or null. */
export const connectedEndpoint = () => defaultAgent?.endpoint ?? null;
/** Alias of onEvent. */
export const subscribe = onEvent;
