// Type declarations for eid-agent.js (the local eID agent's browser client).

export declare const VERSION: string;
export declare const DEFAULT_URL: string;
/** ws port of slot 0 (24847); slot k: ws on DEFAULT_BASE_PORT+2k, wss on DEFAULT_BASE_PORT+2k+1. */
export declare const DEFAULT_BASE_PORT: number;
/** Number of agent slots tried (8). */
export declare const DEFAULT_SLOTS: number;
export declare const DEFAULT_USER_INTERACTION_TIMEOUT: number;

export interface ActionOptions {
  /** Milliseconds the user has for dialogs (PIN, consent); default 120000. The agent may cap it. */
  userInteractionTimeout?: number;
  /** ISO 639-1 language for the agent's dialogs, e.g. "en", "fr", "nl". */
  lang?: string;
}

export interface ReadIdentityOptions extends ActionOptions {
  /** Include the photo (default true). */
  photo?: boolean;
}

export interface ChangePinOptions extends ActionOptions {
  /** Which PIN on cards with several ("PIN1", "PIN2"); default: the authentication PIN. */
  pinName?: string;
}

export interface ChangePinResult {
  pin: string;
  changed: boolean;
  reader: string;
  cardType: string;
}

export type Transport = "auto" | "wss" | "ws";

export interface AgentEndpoint {
  url: string;
  secure: boolean;
  slot: number;
  /** After connecting: false when the wss:// of this slot failed and ws:// is used instead. */
  certificateTrusted?: boolean;
}

export type LocalAccessState = "granted" | "prompt" | "denied" | "unsupported";

export interface EidAgentOptions {
  /** One explicit agent URL instead of the slot range. */
  url?: string;
  /** Explicit agent URLs (e.g. its wss:// and ws:// pair) instead of the slot range. */
  urls?: string[];
  /** Loopback host of the slot range; default "127.0.0.1". */
  host?: string;
  /** ws port of slot 0; default 24847. */
  basePort?: number;
  /** How many slots to try; default 8. */
  slots?: number;
  /**
   * "auto" (default): wss:// preferred, ws:// as fallback (skipped on https pages in WebKit,
   * which blocks it as mixed content); "wss": wss:// only (ws:// is probed to tell an
   * untrusted certificate from a stopped agent, never used); "ws": ws:// only.
   */
  transport?: Transport;
  /** Milliseconds a plain ws:// connection waits for the wss:// of its slot; default 400. */
  secureGrace?: number;
  /** Milliseconds to wait for the sockets while the browser asks the user; default 120000. */
  promptTimeout?: number;
  /** Milliseconds to wait for the socket to open; default 3000. */
  connectTimeout?: number;
  /** Timeout for non-interactive calls (status, subscribe); default 10000. */
  requestTimeout?: number;
  /** Added to user-interaction timeouts; default 5000. */
  timeoutMargin?: number;
  /** First reconnection delay (doubles each attempt); default 500. */
  reconnectDelay?: number;
  /** Longest reconnection delay; default 30000. */
  maxReconnectDelay?: number;
  /** WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
}

export interface CardSummary {
  type: string;
  holder?: string | null;
  serial?: string | null;
}

export interface ReaderStatus {
  name?: string;
  cardPresent: boolean;
  pinpad?: boolean;
  card?: CardSummary | null;
}

export interface StatusResult {
  version: string;
  /** Whether this site is approved; unapproved sites see the version only (no readers). */
  approved?: boolean;
  /** Absent until this site is approved. */
  readers?: ReaderStatus[];
  [key: string]: unknown;
}

export interface LibraryAuthenticateResponse {
  unverifiedCertificate: string;
  algorithm: string;
  signature: string;
  format: string;
  appVersion: string;
}

export interface SignatureAlgorithm {
  cryptoAlgorithm: "ECC" | "RSA" | string;
  hashFunction: string;
  paddingScheme: "NONE" | "PKCS1.5" | "PSS" | string;
}

export interface LibraryGetSigningCertificateResponse {
  certificate: string;
  supportedSignatureAlgorithms: SignatureAlgorithm[];
}

export interface LibrarySignResponse {
  signature: string;
  signatureAlgorithm: SignatureAlgorithm;
}

export interface PinState {
  name: string;
  triesLeft: number | null;
  maxTries: number;
  blocked: boolean;
  /** The PIN is still the initial one: change it before use (EstEID 2025). */
  mustChange: boolean;
}

export interface PinStatusResult {
  pins: PinState[];
  reader: string;
  cardType: string;
}

export type IdentityResult = Record<string, unknown>;

export interface AgentEvent {
  type: "reader-added" | "reader-removed" | "card-inserted" | "card-removed" | string;
  reader: string;
  card: CardSummary | null;
  [key: string]: unknown;
}

export declare const ErrorCode: Readonly<{
  ERR_WEBEID_ACTION_TIMEOUT: "ERR_WEBEID_ACTION_TIMEOUT";
  ERR_WEBEID_USER_TIMEOUT: "ERR_WEBEID_USER_TIMEOUT";
  ERR_WEBEID_USER_CANCELLED: "ERR_WEBEID_USER_CANCELLED";
  ERR_WEBEID_NATIVE_INVALID_ARGUMENT: "ERR_WEBEID_NATIVE_INVALID_ARGUMENT";
  ERR_WEBEID_NATIVE_FATAL: "ERR_WEBEID_NATIVE_FATAL";
  ERR_WEBEID_MISSING_PARAMETER: "ERR_WEBEID_MISSING_PARAMETER";
  ERR_WEBEID_UNKNOWN_ERROR: "ERR_WEBEID_UNKNOWN_ERROR";
  ERR_EID_AGENT_UNAVAILABLE: "ERR_EID_AGENT_UNAVAILABLE";
  ERR_EID_LOCAL_ACCESS_BLOCKED: "ERR_EID_LOCAL_ACCESS_BLOCKED";
  ERR_EID_CERTIFICATE_UNTRUSTED: "ERR_EID_CERTIFICATE_UNTRUSTED";
  ERR_EID_CONNECTION_LOST: "ERR_EID_CONNECTION_LOST";
  ERR_EID_ORIGIN_NOT_ALLOWED: "ERR_EID_ORIGIN_NOT_ALLOWED";
  ERR_EID_NO_READER: "ERR_EID_NO_READER";
  ERR_EID_NO_CARD: "ERR_EID_NO_CARD";
  ERR_EID_CARD_REMOVED: "ERR_EID_CARD_REMOVED";
  ERR_EID_PIN_INVALID: "ERR_EID_PIN_INVALID";
  ERR_EID_PIN_BLOCKED: "ERR_EID_PIN_BLOCKED";
  ERR_EID_BUSY: "ERR_EID_BUSY";
  ERR_EID_UNSUPPORTED_CARD: "ERR_EID_UNSUPPORTED_CARD";
  ERR_EID_CERTIFICATE_NOT_FOUND: "ERR_EID_CERTIFICATE_NOT_FOUND";
  ERR_EID_NOT_SUPPORTED: "ERR_EID_NOT_SUPPORTED";
  ERR_EID_CARD_ERROR: "ERR_EID_CARD_ERROR";
  ERR_EID_TOO_MANY_REQUESTS: "ERR_EID_TOO_MANY_REQUESTS";
  ERR_EID_PIN_CHANGE_REQUIRED: "ERR_EID_PIN_CHANGE_REQUIRED";
  ERR_EID_PARSE_ERROR: "ERR_EID_PARSE_ERROR";
  ERR_EID_INVALID_REQUEST: "ERR_EID_INVALID_REQUEST";
  ERR_EID_METHOD_NOT_FOUND: "ERR_EID_METHOD_NOT_FOUND";
}>;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ErrorDetails {
  code?: string;
  data?: Record<string, unknown>;
  rpcCode?: number;
}

export declare class EidAgentError extends Error {
  constructor(message: string, details?: ErrorDetails);
  /** The string code, e.g. "ERR_WEBEID_USER_CANCELLED". */
  readonly code: ErrorCodeValue | string;
  /** error.data from the agent (always has `code`; may have `parameter`, `triesLeft`, `pinName`). */
  readonly data: Record<string, unknown>;
  /** The JSON-RPC numeric code, when the error came from the agent. */
  readonly rpcCode?: number;
  static readonly code: string;
}

export declare class ActionTimeoutError extends EidAgentError {}
export declare class UserTimeoutError extends EidAgentError {}
export declare class UserCancelledError extends EidAgentError {}
export declare class NativeInvalidArgumentError extends EidAgentError {}
export declare class NativeFatalError extends EidAgentError {}
export declare class MissingParameterError extends EidAgentError {}
export declare class UnknownError extends EidAgentError {}
/**
 * Nothing answered: the agent is not running, or it refused this origin. `data.insecureBlocked`
 * is true when ws:// could not be tried (WebKit on https): then an untrusted certificate is
 * possible too.
 */
export declare class AgentUnavailableError extends EidAgentError {}
/** The browser's local-network permission blocks this site (`data.permission`: "denied"/"prompt"). */
export declare class LocalAccessBlockedError extends EidAgentError {}
/** The agent answers over ws:// but this browser does not trust its wss:// certificate. */
export declare class CertificateUntrustedError extends EidAgentError {}
export declare class ConnectionLostError extends EidAgentError {}
export declare class OriginNotAllowedError extends EidAgentError {}
export declare class NoReaderError extends EidAgentError {}
export declare class NoCardError extends EidAgentError {}
export declare class CardRemovedError extends EidAgentError {}
export declare class PinInvalidError extends EidAgentError {
  readonly triesLeft: number | undefined;
}
export declare class PinBlockedError extends EidAgentError {}
export declare class BusyError extends EidAgentError {}
export declare class UnsupportedCardError extends EidAgentError {}
export declare class CertificateNotFoundError extends EidAgentError {}
export declare class NotSupportedError extends EidAgentError {}
export declare class CardError extends EidAgentError {}
export declare class TooManyRequestsError extends EidAgentError {}
/** The PIN is still the card's initial one (EstEID 2025); `pinName` says which: change it first. */
export declare class PinChangeRequiredError extends EidAgentError {}
export declare class ProtocolError extends EidAgentError {}

export declare function errorFromRpc(error: {
  code?: number;
  message?: string;
  data?: Record<string, unknown>;
}): EidAgentError;

export declare function localAccessState(): Promise<LocalAccessState>;
/** True when the first connection will make the browser ask the user: explain it first. */
export declare function needsLocalAccessPrompt(): Promise<boolean>;
export declare function agentEndpoints(options?: EidAgentOptions): AgentEndpoint[];
/** The shared agent's endpoint in use, or null before it connected. */
export declare function connectedEndpoint(): AgentEndpoint | null;

export declare class EidAgent {
  constructor(options?: EidAgentOptions);
  /** The URL in use (or the first endpoint to try). */
  readonly url: string;
  readonly endpoints: AgentEndpoint[];
  readonly endpoint: AgentEndpoint | null;
  status(): Promise<StatusResult>;
  authenticate(challengeNonce: string, options?: ActionOptions): Promise<LibraryAuthenticateResponse>;
  getSigningCertificate(options?: ActionOptions): Promise<LibraryGetSigningCertificateResponse>;
  sign(
    certificate: string,
    hash: string,
    hashFunction: string,
    options?: ActionOptions,
  ): Promise<LibrarySignResponse>;
  readIdentity(options?: ReadIdentityOptions): Promise<IdentityResult>;
  pinStatus(options?: ActionOptions): Promise<PinStatusResult>;
  changePin(options?: ChangePinOptions): Promise<ChangePinResult>;
  /** Returns a function that removes the listener. */
  onEvent(callback: (event: AgentEvent) => void): () => void;
  close(): void;
}

export declare function configure(options?: EidAgentOptions): EidAgent;
export declare function status(): Promise<StatusResult>;
export declare function authenticate(
  challengeNonce: string,
  options?: ActionOptions,
): Promise<LibraryAuthenticateResponse>;
export declare function getSigningCertificate(
  options?: ActionOptions,
): Promise<LibraryGetSigningCertificateResponse>;
export declare function sign(
  certificate: string,
  hash: string,
  hashFunction: string,
  options?: ActionOptions,
): Promise<LibrarySignResponse>;
export declare function readIdentity(options?: ReadIdentityOptions): Promise<IdentityResult>;
export declare function pinStatus(options?: ActionOptions): Promise<PinStatusResult>;
export declare function changePin(options?: ChangePinOptions): Promise<ChangePinResult>;
export declare function onEvent(callback: (event: AgentEvent) => void): () => void;
export declare const subscribe: typeof onEvent;
