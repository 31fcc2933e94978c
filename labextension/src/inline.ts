/**
 * Ghost text: an inline completion provider that streams the model's
 * suggestion over the WebSocket.
 *
 * JupyterLab never tells a provider to stop, so this one supersedes itself:
 * every call of `fetch` (one per keystroke) cancels the request under way,
 * waits for a quiet moment (debounce), then asks; the server also cancels an
 * older request for the same cell (the `key`).
 */
import type {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider
} from '@jupyterlab/completer';
import { InlineCompletionTriggerKind } from '@jupyterlab/completer';

import type { SuggestionCache } from './cache';
import type { RequestBuilder } from './context';
import { codecompIcon } from './icons';
import type { SettingsModel } from './settings';
import { cleanSuggestion, distinctSuggestions, isMiddleOfLine } from './suggestion';
import type {
  IBuiltRequest,
  ICodecompStatus,
  ICompletionReply,
  IStreamHandle,
  IStreamMessage
} from './tokens';
import type { CodecompTransport } from './transport';

const EMPTY: IInlineCompletionList = { items: [] };

/** The provider's id (also in the inline completer's settings). */
export const INLINE_PROVIDER_ID = 'jupyter-codecomp';

/** A path the server turned off (policy) is not asked again for this long. */
const DISABLED_PATH_MS = 10000;

/** What the provider needs. */
export interface IInlineProviderOptions {
  transport: CodecompTransport;
  status: ICodecompStatus;
  settings: SettingsModel;
  builder: RequestBuilder;
  cache: SuggestionCache;
}

/** The request under way. */
interface IRunning {
  handle: IStreamHandle;
  built: IBuiltRequest;
  sentAt: number;
  finish: (texts: string[] | null) => void;
}

export class CodecompInlineProvider implements IInlineCompletionProvider {
  readonly identifier = INLINE_PROVIDER_ID;
  readonly name = 'Codecomp';
  readonly icon = codecompIcon.bindprops({ stylesheet: 'menuItem' });
  /**
   * Defaults of JupyterLab's per-provider settings: ask in the middle of a
   * line too, debounce here (not in JupyterLab, which cannot cancel), and
   * leave room for a cold CPU prompt before the first token.
   */
  readonly schema = {
    default: {
      enabled: true,
      autoFillInMiddle: true,
      debouncerDelay: 0,
      timeout: 20000
    }
  };

  constructor(private _options: IInlineProviderOptions) {}

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    const ticket = ++this._ticket;
    this._stop();
    try {
      return await this._fetch(ticket, request, context);
    } catch {
      return EMPTY;
    }
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }> {
    const running = this._running;
    if (!running || running.handle.id !== token) {
      return;
    }
    for (;;) {
      const message = await running.handle.next();
      if (this._running !== running || !message) {
        return;
      }
      if (message.done) {
        const texts = this._finish(running, message);
        if (texts) {
          yield { response: { insertText: texts[0] ?? '' } };
        }
        return;
      }
      const text = cleanSuggestion(message.text ?? '', running.built);
      if (text) {
        yield { response: { insertText: text, isIncomplete: true } };
      }
    }
  }

  private async _fetch(
    ticket: number,
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    const { status, settings, builder, cache, transport } = this._options;
    const config = settings.current;
    if (!config.enabled || !config.inline || !status.ready) {
      return EMPTY;
    }
    const invoked = context.triggerKind === InlineCompletionTriggerKind.Invoke;
    const built = builder.build(request, context.widget, context.session, {
      mode: config.mode,
      n: invoked ? config.alternatives : 1,
      maxTokens: config.maxTokens
    });
    if (!built || this._isPathDisabled(built.body.path)) {
      return EMPTY;
    }
    if (isMiddleOfLine(built)) {
      built.body.mode = 'line';
    }
    const { key, body } = built;
    if (!invoked) {
      // Typing through a suggestion: show what is left of it at once.
      const cached = cache.get(key, body.prefix, body.suffix);
      if (cached) {
        return { items: [{ insertText: cached[0] }] };
      }
      await sleep(config.debounceMs);
      if (ticket !== this._ticket) {
        return EMPTY;
      }
    }
    const delegate = cache.begin(key, body.prefix, body.suffix);
    const handle = await transport.stream(body, { key });
    const running: IRunning = {
      handle,
      built,
      sentAt: performance.now(),
      finish: texts => delegate.resolve(texts)
    };
    if (ticket !== this._ticket) {
      handle.cancel();
      running.finish(null);
      return EMPTY;
    }
    this._running = running;
    for (;;) {
      const message = await handle.next();
      if (this._running !== running || !message) {
        running.finish(null);
        return EMPTY;
      }
      if (message.done) {
        const texts = this._finish(running, message) ?? [];
        return { items: texts.map(insertText => ({ insertText })) };
      }
      const text = cleanSuggestion(message.text ?? '', built);
      if (text && !invoked) {
        // Show the first words now; `stream` brings the rest.
        return { items: [{ insertText: text, isIncomplete: true, token: handle.id }] };
      }
    }
  }

  /** Handle the last message: the suggestions, or null when there are none. */
  private _finish(running: IRunning, message: IStreamMessage): string[] | null {
    const { status, cache } = this._options;
    if (this._running === running) {
      this._running = null;
    }
    const reply: ICompletionReply | undefined = message.reply;
    if (!reply) {
      if (message.error) {
        status.reportFailure(message.error.code);
      }
      running.finish(null);
      return null;
    }
    if (reply.disabled) {
      // The notebook switch is known here (and may be newer than the saved file):
      // only remember the server's own reasons (settings, exam paths).
      if (reply.disabled !== 'notebook') {
        this._disabledPaths.set(running.built.body.path ?? '', Date.now());
      }
      running.finish(null);
      return null;
    }
    status.recordLatency(performance.now() - running.sentAt);
    const texts = distinctSuggestions(
      reply.completions.map(completion => completion.text),
      running.built
    );
    const { key, body } = running.built;
    cache.put(key, body.prefix, body.suffix, texts);
    running.finish(texts);
    return texts;
  }

  /** Cancel the request under way (a newer keystroke makes it stale). */
  private _stop(): void {
    const running = this._running;
    if (running) {
      this._running = null;
      running.handle.cancel();
      running.finish(null);
    }
  }

  private _isPathDisabled(path: string | null): boolean {
    const since = this._disabledPaths.get(path ?? '');
    if (since === undefined) {
      return false;
    }
    if (Date.now() - since > DISABLED_PATH_MS) {
      this._disabledPaths.delete(path ?? '');
      return false;
    }
    return true;
  }

  /** Forget policy answers (the notebook switch changed). */
  resetPolicy(): void {
    this._disabledPaths.clear();
  }

  private _ticket = 0;
  private _running: IRunning | null = null;
  private _disabledPaths = new Map<string, number>();
}

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}
