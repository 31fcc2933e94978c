/**
 * Typed interfaces of jupyter-codecomp's frontend: the server contract
 * (../shared/API.md), the user settings, and the roles shared between plugins.
 */
import type { ISignal } from '@lumino/signaling';

/** A cell of the notebook as the server reads it. */
export interface ICodecompCell {
  cell_type: 'code' | 'markdown' | 'raw';
  source: string;
}

/** Completion mode: finish the line, allow a multi-line block, or let the server pick. */
export type CompletionMode = 'line' | 'block' | 'auto';

/** Body of `POST codecomp/complete` and `request` of a stream message. */
export interface ICompletionRequest {
  prefix: string;
  suffix: string;
  cells: ICodecompCell[];
  cells_below: ICodecompCell[];
  kernel_id: string | null;
  path: string | null;
  language: string;
  max_new_tokens?: number;
  n?: number;
  mode?: CompletionMode;
}

/** One completion: exactly what goes in at the cursor. */
export interface ICompletion {
  text: string;
  score: number;
  /** How likely the text is right, in [0, 1]; a server without it means 1. */
  confidence?: number;
}

/** Reply of `POST codecomp/complete` (and `reply` of the last stream message). */
export interface ICompletionReply {
  completions: ICompletion[];
  model: string;
  device: string;
  /** Set when policy turned completion off for this request. */
  disabled?: string | null;
  context?: {
    prompt_tokens?: number;
    cached_tokens?: number;
    cells?: number;
    variables?: number;
    kernel?: string | null;
  };
  timings_ms?: {
    context?: number;
    prefill?: number;
    decode?: number;
    total?: number;
    first_token?: number;
  };
}

/** The `{error: {code, message}}` body of a failed request. */
export interface ICodecompErrorBody {
  code: string;
  message: string;
}

/** A message the server sends on `codecomp/stream`. */
export interface IStreamMessage {
  id: string | null;
  done: boolean;
  /** The first completion so far. */
  text?: string;
  reply?: ICompletionReply;
  error?: ICodecompErrorBody;
  cancelled?: boolean;
}

/** `limits` of `GET codecomp/status`. */
export interface IServerLimits {
  max_new_tokens: number;
  default_max_new_tokens?: { line: number; block: number };
  alternatives: number;
}

/** Server states of `GET codecomp/status`. */
export type ServerState = 'loading' | 'ready' | 'failed' | 'disabled' | 'engine_unavailable';

/** Reply of `GET codecomp/status`. */
export interface IServerStatus {
  state: ServerState;
  enabled: boolean;
  model: string;
  device: string | null;
  providers: string[];
  version: string;
  error: string | null;
  /** A command the user can run to repair a failure. */
  fix: string | null;
  latency_ms: { last: number | null; p50: number | null };
  /** What a request may ask for (the frontend keeps no copies of them). */
  limits?: IServerLimits;
  /** The server's default threshold of confidence for ghost text. */
  min_confidence?: number;
  [extra: string]: unknown;
}

/**
 * What the frontend shows: the server state, plus `missing` (no server
 * extension answers), `unreachable` (the server did not answer) and `off`
 * (turned off in the settings or for the current notebook).
 */
export type DisplayState = 'loading' | 'ready' | 'off' | 'error' | 'missing' | 'unknown';

/** The user settings of the frontend (schema/plugin.json). */
export interface ICodecompSettings {
  /** Ask the model at all. */
  enabled: boolean;
  /** Show ghost text while typing. */
  inline: boolean;
  /** `line`: finish the line; `block`: allow several lines. */
  mode: 'line' | 'block';
  /** Derive the quiet time before a request from the typist's pace. */
  adaptiveDebounce: boolean;
  /** The fixed quiet time after a keystroke when `adaptiveDebounce` is off. */
  debounceMs: number;
  /** Cap on generated tokens; null: the server's default (capped by its limit). */
  maxTokens: number | null;
  /** Ghost text only for suggestions this confident; null: the server's default. */
  minConfidence: number | null;
  /** Prefill a cell's prompt when the cursor enters it, a cell runs, a notebook opens. */
  warm: boolean;
  /** Alternatives asked for on explicit invocation and in the Tab list. */
  alternatives: number;
  /** Add the model's suggestions to the Tab completer list. */
  tabItems: boolean;
}

/** What a composite setting falls back to when it is missing or invalid. */
export const DEFAULT_SETTINGS: ICodecompSettings = {
  enabled: true,
  inline: true,
  mode: 'line',
  adaptiveDebounce: true,
  debounceMs: 250,
  maxTokens: null,
  minConfidence: null,
  warm: true,
  alternatives: 2,
  tabItems: true
};

/** Tracks the server's state for every part of the frontend. */
export interface ICodecompStatus {
  /** The last status the server sent, or null before any. */
  readonly server: IServerStatus | null;
  /** Whether completions can be asked for now. */
  readonly ready: boolean;
  /** The coarse state for display. */
  readonly state: DisplayState;
  /** Client-side latency of the last completion (ms), request to final text. */
  readonly lastLatencyMs: number | null;
  /** Emitted whenever any of the above changes. */
  readonly changed: ISignal<ICodecompStatus, void>;
  /** Ask the server now (after a failure, or when the user looks). */
  refresh(): Promise<void>;
  /** Record the latency of a finished completion. */
  recordLatency(ms: number): void;
  /** A completion request failed in a way that says the server changed state. */
  reportFailure(code: string): void;
}

/** Per-request options of the transport. */
export interface ITransportOptions {
  /** Supersession key ("path#cell id"); an older request with it is cancelled. */
  key?: string;
  /** Give up (and cancel on the server) after this many ms. */
  timeoutMs?: number;
}

/** A running streamed completion. */
export interface IStreamHandle {
  readonly id: string;
  /** The next message, or null once the stream has ended (done, cancelled, closed). */
  next(): Promise<IStreamMessage | null>;
  /** Stop the request (tells the server) and end the stream. */
  cancel(): void;
  /** Whether the stream has ended. */
  readonly closed: boolean;
}

/** The request of a completion provider, made ready for the server. */
export interface IBuiltRequest {
  body: ICompletionRequest;
  /** "path#cell id" (or the path alone in a file). */
  key: string;
  /** The rest of the cursor's line. */
  lineSuffix: string;
  /** Cursor offset in the editor text (JS string index). */
  cursor: number;
  /**
   * Text asked for beyond the cursor (a newline and indentation, for the
   * next line after an accept): `body.prefix` ends with it, and every
   * suggestion shown starts with it.
   */
  lead: string;
}
