/**
 * Follows `GET codecomp/status`: often while the model loads (with backoff),
 * seldom once it is ready, and quietly when no server extension answers.
 */
import { Signal } from '@lumino/signaling';

import { CodecompApi, CodecompError } from './api';
import type { DisplayState, ICodecompStatus, IServerStatus } from './tokens';

/** Poll intervals (ms). */
export const POLL = {
  loadingFirst: 1000,
  loadingMax: 5000,
  ready: 60000,
  failed: 30000,
  unreachableMax: 30000,
  missing: 300000
};

export class StatusModel implements ICodecompStatus {
  constructor(private _api: CodecompApi) {}

  get server(): IServerStatus | null {
    return this._server;
  }

  get ready(): boolean {
    return this._state === 'ready';
  }

  get state(): DisplayState {
    return this._state;
  }

  /** The last failure of the status call itself, for the details dialog. */
  get lastError(): string | null {
    return this._lastError;
  }

  get lastLatencyMs(): number | null {
    return this._lastLatencyMs;
  }

  get changed(): Signal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Start polling. */
  start(): void {
    void this.refresh();
  }

  async refresh(): Promise<void> {
    if (this._disposed) {
      return;
    }
    clearTimeout(this._timer);
    let delay: number;
    try {
      const status = await this._api.status();
      this._server = status;
      this._lastError = null;
      this._setState(this._fromServer(status));
      delay = this._nextDelay();
    } catch (error) {
      const failure = error instanceof CodecompError ? error : null;
      this._lastError = failure
        ? `${failure.status || ''} ${failure.message}`.trim()
        : String(error);
      if (failure?.isMissing) {
        this._warnOnce(
          'jupyter-codecomp: the server extension does not answer (404); completions stay off.'
        );
        this._setState('missing');
        delay = POLL.missing;
      } else {
        this._setState('unknown');
        this._unreachable = Math.min(
          POLL.unreachableMax,
          this._unreachable ? this._unreachable * 2 : 2000
        );
        delay = this._unreachable;
      }
    }
    if (!this._disposed) {
      this._timer = setTimeout(() => void this.refresh(), delay);
    }
  }

  recordLatency(ms: number): void {
    this._lastLatencyMs = Math.round(ms);
    this._changed.emit();
  }

  reportFailure(code: string): void {
    // The model went away or the server restarted: look again soon.
    const transient = ['not_ready', 'failed', 'engine_unavailable', 'network', 'closed'];
    if (transient.includes(code)) {
      if (this._state === 'ready') {
        this._setState('loading');
      }
      clearTimeout(this._timer);
      this._timer = setTimeout(() => void this.refresh(), POLL.loadingFirst);
    }
  }

  dispose(): void {
    this._disposed = true;
    clearTimeout(this._timer);
    Signal.clearData(this);
  }

  private _fromServer(status: IServerStatus): DisplayState {
    switch (status.state) {
      case 'ready':
        return status.enabled === false ? 'off' : 'ready';
      case 'loading':
        return 'loading';
      case 'disabled':
        return 'off';
      case 'failed':
      case 'engine_unavailable': // the shared engine (engine_url) is down: details on click
        return 'error';
      default:
        return 'unknown';
    }
  }

  private _nextDelay(): number {
    this._unreachable = 0;
    if (this._state === 'loading') {
      this._loading = this._loading
        ? Math.min(POLL.loadingMax, this._loading * 1.5)
        : POLL.loadingFirst;
      return this._loading;
    }
    this._loading = 0;
    return this._state === 'error' ? POLL.failed : POLL.ready;
  }

  private _setState(state: DisplayState): void {
    this._state = state;
    this._changed.emit();
  }

  private _warnOnce(message: string): void {
    if (!this._warned) {
      this._warned = true;
      console.warn(message);
    }
  }

  private _server: IServerStatus | null = null;
  private _state: DisplayState = 'unknown';
  private _lastError: string | null = null;
  private _lastLatencyMs: number | null = null;
  private _changed = new Signal<this, void>(this);
  private _timer: ReturnType<typeof setTimeout> | undefined;
  private _loading = 0;
  private _unreachable = 0;
  private _warned = false;
  private _disposed = false;
}
