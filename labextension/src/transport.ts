/**
 * How completions travel: the WebSocket when it opens, HTTP otherwise.
 * Both give the same `IStreamHandle`, so providers do not care which.
 */
import { UUID } from '@lumino/coreutils';

import { CodecompApi, CodecompError } from './api';
import { StreamConnection, StreamHandle } from './stream';
import type {
  ICompletionReply,
  ICompletionRequest,
  IStreamHandle,
  ITransportOptions
} from './tokens';

export class CodecompTransport {
  constructor(
    readonly api: CodecompApi,
    readonly socket: StreamConnection = new StreamConnection(api.serverSettings)
  ) {}

  /** A streamed completion (text so far, then the reply). Never rejects. */
  async stream(
    request: ICompletionRequest,
    options: ITransportOptions = {}
  ): Promise<IStreamHandle> {
    if (!this.socket.unavailable) {
      try {
        return await this.socket.start(request, options.key);
      } catch {
        // Fall through to HTTP.
      }
    }
    return this._httpHandle(request);
  }

  /**
   * The whole reply, or an error: `CodecompError` (code `timeout` past
   * `timeoutMs`, the request then cancelled on the server).
   */
  async complete(
    request: ICompletionRequest,
    options: ITransportOptions = {}
  ): Promise<ICompletionReply> {
    const handle = await this.stream(request, options);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    if (options.timeoutMs) {
      timer = setTimeout(() => {
        timedOut = true;
        handle.cancel();
      }, options.timeoutMs);
    }
    try {
      for (;;) {
        const message = await handle.next();
        if (!message) {
          throw new CodecompError(0, timedOut ? 'timeout' : 'closed', 'no reply');
        }
        if (!message.done) {
          continue;
        }
        if (message.reply) {
          return message.reply;
        }
        if (message.error) {
          throw new CodecompError(0, message.error.code, message.error.message);
        }
        throw new CodecompError(0, 'cancelled', 'superseded');
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Ask the server to prefill this prompt (`POST codecomp/warm`; lowest
   * priority: any completion pre-empts it). Failures only cost a cold
   * keystroke, so they are not reported.
   */
  async warm(request: ICompletionRequest): Promise<void> {
    await this.api.warm(request).catch(() => undefined);
  }

  dispose(): void {
    this.socket.dispose();
  }

  /** One final message from `POST codecomp/complete`. */
  private _httpHandle(request: ICompletionRequest): IStreamHandle {
    const abort = new AbortController();
    const handle = new StreamHandle(UUID.uuid4(), () => abort.abort());
    this.api.complete(request, abort.signal).then(
      reply => {
        const text = reply.completions[0]?.text ?? '';
        handle.push({ id: handle.id, done: true, text, reply });
      },
      (error: unknown) => {
        const failure =
          error instanceof CodecompError
            ? { code: error.code, message: error.message }
            : { code: 'network', message: String(error) };
        handle.push({ id: handle.id, done: true, error: failure });
      }
    );
    return handle;
  }
}
