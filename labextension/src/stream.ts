/**
 * The WebSocket side of the API (`codecomp/stream`): one socket per page,
 * opened on demand, many requests multiplexed by id.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { UUID } from '@lumino/coreutils';

import type { ICompletionRequest, IStreamHandle, IStreamMessage } from './tokens';

/** How long to wait for the socket to open before giving up. */
const OPEN_TIMEOUT_MS = 5000;

/** After the socket failed twice, use HTTP for this long before trying again. */
const RETRY_SOCKET_MS = 60000;

/** A streamed request: a queue of messages read with `next()`. */
export class StreamHandle implements IStreamHandle {
  constructor(
    readonly id: string,
    private _onCancel: (handle: StreamHandle) => void
  ) {}

  get closed(): boolean {
    return this._closed;
  }

  next(): Promise<IStreamMessage | null> {
    if (this._queue.length) {
      // Text messages carry the whole text so far: skip to the newest one,
      // but never past the final message.
      let index = 0;
      while (index + 1 < this._queue.length && !this._queue[index].done) {
        index++;
      }
      const message = this._queue[index];
      this._queue.splice(0, index + 1);
      return Promise.resolve(message);
    }
    if (this._closed) {
      return Promise.resolve(null);
    }
    return new Promise(resolve => {
      this._waiter = resolve;
    });
  }

  cancel(): void {
    if (!this._closed) {
      this._onCancel(this);
      this.close();
    }
  }

  /** Deliver a server message. */
  push(message: IStreamMessage): void {
    if (this._closed) {
      return;
    }
    if (this._waiter) {
      const waiter = this._waiter;
      this._waiter = null;
      waiter(message);
    } else {
      this._queue.push(message);
    }
    if (message.done) {
      this._closed = true;
    }
  }

  /** End the stream without a final message. */
  close(): void {
    this._closed = true;
    this._queue = this._queue.filter(message => message.done);
    if (this._waiter) {
      const waiter = this._waiter;
      this._waiter = null;
      waiter(null);
    }
  }

  private _queue: IStreamMessage[] = [];
  private _waiter: ((message: IStreamMessage | null) => void) | null = null;
  private _closed = false;
}

/** The page's connection to `codecomp/stream`. */
export class StreamConnection {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** Whether the socket could not be opened last time (use HTTP instead). */
  get unavailable(): boolean {
    return this._failures >= 2 && Date.now() - this._failedAt < RETRY_SOCKET_MS;
  }

  /** Start a streamed completion; rejects when the socket cannot be opened. */
  async start(request: ICompletionRequest, key?: string): Promise<IStreamHandle> {
    const socket = await this._open();
    const handle = new StreamHandle(UUID.uuid4(), h => this._cancel(h));
    this._handles.set(handle.id, handle);
    const message: Record<string, unknown> = { id: handle.id, request };
    if (key) {
      message.key = key;
    }
    socket.send(JSON.stringify(message));
    return handle;
  }

  dispose(): void {
    this._socket?.close();
    this._socket = null;
    this._closeAll();
  }

  private _cancel(handle: StreamHandle): void {
    this._handles.delete(handle.id);
    if (this._socket?.readyState === WebSocket.OPEN) {
      this._socket.send(JSON.stringify({ cancel: handle.id }));
    }
  }

  private _open(): Promise<WebSocket> {
    if (this._socket?.readyState === WebSocket.OPEN) {
      return Promise.resolve(this._socket);
    }
    if (this._opening) {
      return this._opening;
    }
    const settings = this.serverSettings;
    let url = URLExt.join(settings.wsUrl, 'codecomp', 'stream');
    const token = settings.token;
    if (settings.appendToken && token) {
      url += `?token=${encodeURIComponent(token)}`;
    }
    this._opening = new Promise<WebSocket>((resolve, reject) => {
      const socket = new settings.WebSocket(url);
      const timer = setTimeout(() => {
        socket.close();
        fail();
      }, OPEN_TIMEOUT_MS);
      const fail = () => {
        clearTimeout(timer);
        this._failures++;
        this._failedAt = Date.now();
        this._opening = null;
        reject(new Error('codecomp: stream socket did not open'));
      };
      socket.onopen = () => {
        clearTimeout(timer);
        this._failures = 0;
        this._opening = null;
        this._socket = socket;
        socket.onclose = () => this._onClose(socket);
        resolve(socket);
      };
      socket.onerror = () => undefined;
      socket.onclose = fail;
      socket.onmessage = event => this._onMessage(event);
    });
    return this._opening;
  }

  private _onMessage(event: MessageEvent): void {
    let message: IStreamMessage;
    try {
      message = JSON.parse(String(event.data));
    } catch {
      return;
    }
    const handle = message.id ? this._handles.get(message.id) : undefined;
    if (!handle) {
      return;
    }
    if (message.done) {
      this._handles.delete(handle.id);
    }
    handle.push(message);
  }

  private _onClose(socket: WebSocket): void {
    if (this._socket === socket) {
      this._socket = null;
    }
    this._closeAll();
  }

  private _closeAll(): void {
    for (const handle of this._handles.values()) {
      handle.close();
    }
    this._handles.clear();
  }

  private _socket: WebSocket | null = null;
  private _opening: Promise<WebSocket> | null = null;
  private _handles = new Map<string, StreamHandle>();
  private _failures = 0;
  private _failedAt = 0;
}
