/**
 * REST calls to the server extension (`codecomp/status`, `codecomp/complete`).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  ICodecompErrorBody,
  ICompletionReply,
  ICompletionRequest,
  IServerStatus
} from './tokens';

/** A failed call: HTTP status (0 when the server did not answer) and error code. */
export class CodecompError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterS: number | null = null
  ) {
    super(message);
    this.name = 'CodecompError';
  }

  /** No server extension answers at this address. */
  get isMissing(): boolean {
    return this.status === 404;
  }
}

/** The HTTP side of the API. */
export class CodecompApi {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** `GET codecomp/status`. */
  async status(): Promise<IServerStatus> {
    return (await this._call('status', { method: 'GET' })) as IServerStatus;
  }

  /** `POST codecomp/complete`; `signal` aborts it. */
  async complete(body: ICompletionRequest, signal?: AbortSignal): Promise<ICompletionReply> {
    return (await this._call('complete', {
      method: 'POST',
      body: JSON.stringify(body),
      signal
    })) as ICompletionReply;
  }

  /** `POST codecomp/warm`: prefill a prompt on the server (nothing to wait for). */
  async warm(body: ICompletionRequest): Promise<void> {
    await this._call('warm', { method: 'POST', body: JSON.stringify(body) });
  }

  private async _call(route: string, init: RequestInit): Promise<unknown> {
    const url = URLExt.join(this.serverSettings.baseUrl, 'codecomp', route);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.serverSettings);
    } catch (error) {
      const aborted = (error as Error)?.name === 'AbortError';
      throw new CodecompError(0, aborted ? 'aborted' : 'network', String(error));
    }
    let data: any = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const body: Partial<ICodecompErrorBody> = data?.error ?? {};
      const retry = Number(response.headers.get('Retry-After'));
      throw new CodecompError(
        response.status,
        body.code ?? String(response.status),
        body.message ?? response.statusText,
        Number.isFinite(retry) && retry > 0 ? retry : null
      );
    }
    return data;
  }
}
