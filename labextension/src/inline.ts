/**
 * Ghost text: an inline completion provider that streams the model's
 * suggestion over the WebSocket.
 *
 * JupyterLab never tells a provider to stop, so this one supersedes itself:
 * a keystroke that leaves the suggestion cancels the request under way,
 * waits for a quiet moment (an adaptive debounce, `pace.ts`), then asks; the
 * server also cancels an older request for the same cell (the `key`).
 * A keystroke that types the start of the suggestion (typing through the
 * ghost, or a partial accept) sends nothing: the rest is shown at once, and
 * a suggestion still streaming goes on streaming its rest.
 */
import type {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider
} from '@jupyterlab/completer';
import { InlineCompletionTriggerKind } from '@jupyterlab/completer';
import { UUID } from '@lumino/coreutils';

import { nextLineLead } from './accept';
import type { SuggestionCache } from './cache';
import type { RequestBuilder } from './context';
import { codecompIcon } from './icons';
import { TypingPace } from './pace';
import { minConfidence, requestLimits, type SettingsModel } from './settings';
import { LiveSuggestion } from './live';
import { cleanSuggestion, isMiddleOfLine } from './suggestion';
import type { IBuiltRequest, ICodecompStatus } from './tokens';
import type { CodecompTransport } from './transport';

const EMPTY: IInlineCompletionList = { items: [] };

/** The provider's id (also in the inline completer's settings). */
export const INLINE_PROVIDER_ID = 'jupyter-codecomp';

/** A path the server turned off (policy) is not asked again for this long. */
const DISABLED_PATH_MS = 10000;

/** An invoke this soon after an accept asks for what follows the accepted text. */
const AFTER_ACCEPT_MS = 1000;

/** What the provider needs. */
export interface IInlineProviderOptions {
  transport: CodecompTransport;
  status: ICodecompStatus;
  settings: SettingsModel;
  builder: RequestBuilder;
  cache: SuggestionCache;
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

  /** Requests sent (tests and the status read it). */
  get requestsSent(): number {
    return this._sent;
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    const ticket = ++this._ticket;
    try {
      return await this._fetch(ticket, request, context);
    } catch {
      return EMPTY;
    }
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }> {
    const live = this._live;
    if (!live || live.token !== token) {
      return;
    }
    for (;;) {
      await live.changed();
      if (this._live !== live || live.token !== token) {
        return; // a newer item shows this suggestion now, or a newer one
      }
      const rest = this._rest(live);
      if (live.done) {
        yield { response: { insertText: rest ?? '' } };
        return;
      }
      if (rest) {
        yield { response: { insertText: rest, isIncomplete: true } };
      }
    }
  }

  /** The next fetch asks for what follows an accepted suggestion. */
  afterAccept(): void {
    this._acceptedAt = Date.now();
  }

  /** The ghost text left at this place: of the suggestion streaming or of the cache. */
  remainder(built: IBuiltRequest): string | null {
    const live = this._live;
    if (live && this._continues(live, built)) {
      const typed = built.body.prefix.slice(live.place.length);
      if (!live.done && live.text.startsWith(typed) && live.text.length > typed.length) {
        return live.text.slice(typed.length);
      }
    }
    const min = minConfidence(this._options.settings.current, this._options.status.server);
    const cached = this._options.cache.get(
      built.key,
      built.body.prefix,
      built.body.suffix,
      min > 0
    );
    return cached?.[0] ?? null;
  }

  /** Forget policy answers (the notebook switch changed). */
  resetPolicy(): void {
    this._disabledPaths.clear();
  }

  private async _fetch(
    ticket: number,
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    const { status, settings } = this._options;
    const config = settings.current;
    if (!config.enabled || !config.inline || !status.ready) {
      return EMPTY;
    }
    const invoked = context.triggerKind === InlineCompletionTriggerKind.Invoke;
    const afterAccept = invoked && Date.now() - this._acceptedAt < AFTER_ACCEPT_MS;
    this._acceptedAt = 0;
    if (!invoked) {
      this._pace.keystroke(performance.now());
    }
    const built = this._build(
      request,
      context,
      afterAccept ? 1 : invoked ? config.alternatives : 1
    );
    if (!built || this._isPathDisabled(built.body.path)) {
      this._stop();
      return EMPTY;
    }
    if (!invoked) {
      // Typing through the ghost: show what is left of it at once, ask nothing.
      const through = this._typedThrough(built);
      if (through) {
        return through;
      }
    }
    this._stop();
    const asked = afterAccept ? this._nextLine(request, context, built) : built;
    if (!invoked) {
      await sleep(this._debounceMs(built));
      if (ticket !== this._ticket) {
        return EMPTY;
      }
    }
    return this._ask(ticket, asked, invoked && !afterAccept);
  }

  private _build(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext,
    n: number,
    lead?: string
  ): IBuiltRequest | null {
    const { status, settings, builder } = this._options;
    const config = settings.current;
    const limits = requestLimits(config, status.server, { n, maxTokens: null });
    const built = builder.build(request, context.widget, context.session, {
      mode: config.mode,
      n: limits.n,
      maxTokens: limits.maxTokens,
      lead
    });
    if (built && isMiddleOfLine(built)) {
      built.body.mode = 'line';
    }
    return built;
  }

  /**
   * After an accept at the end of a line, the suggestion is the next line:
   * ask as if the newline (and its indentation) were typed, and show them.
   */
  private _nextLine(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext,
    built: IBuiltRequest
  ): IBuiltRequest {
    const line = built.body.prefix.slice(built.body.prefix.lastIndexOf('\n') + 1);
    if (built.lineSuffix.trim() !== '' || line.trim() === '') {
      return built;
    }
    return this._build(request, context, 1, nextLineLead(line)) ?? built;
  }

  private _typedThrough(built: IBuiltRequest): IInlineCompletionList | null {
    const live = this._live;
    const rest = this.remainder(built);
    if (!rest) {
      // Typing through a suggestion below the confidence threshold: still nothing to ask.
      const { cache } = this._options;
      return cache.get(built.key, built.body.prefix, built.body.suffix) ? EMPTY : null;
    }
    if (live && !live.done && this._continues(live, built)) {
      live.typed = built.body.prefix.slice(live.place.length);
      live.token = UUID.uuid4();
      return { items: [{ insertText: rest, isIncomplete: true, token: live.token }] };
    }
    return { items: [{ insertText: rest }] };
  }

  private async _ask(
    ticket: number,
    built: IBuiltRequest,
    wholeReply: boolean
  ): Promise<IInlineCompletionList> {
    const { transport, cache, status } = this._options;
    const place = built.body.prefix.slice(0, built.body.prefix.length - built.lead.length);
    const delegate = cache.begin(built.key, place, built.body.suffix);
    const handle = await transport.stream(built.body, { key: built.key });
    this._sent++;
    const live = new LiveSuggestion(handle, built, place, {
      clean: text => cleanSuggestion(text, built),
      minConfidence: () => minConfidence(this._options.settings.current, status.server),
      onReply: (reply, sentAt) => this._onReply(live, reply, sentAt),
      onError: code => status.reportFailure(code),
      onEnd: texts => delegate.resolve(texts)
    });
    if (ticket !== this._ticket) {
      live.cancel();
      return EMPTY;
    }
    this._live = live;
    while (!live.done && (wholeReply || !live.text)) {
      await live.changed();
    }
    if (this._live !== live || ticket !== this._ticket) {
      return EMPTY;
    }
    if (live.done) {
      return { items: live.ghostTexts.map(insertText => ({ insertText })) };
    }
    live.token = UUID.uuid4();
    return { items: [{ insertText: live.text, isIncomplete: true, token: live.token }] };
  }

  /** Whether `built` is at or after `live`'s place, with the same text after it. */
  private _continues(live: LiveSuggestion, built: IBuiltRequest): boolean {
    return (
      live.built.key === built.key &&
      live.built.body.suffix === built.body.suffix &&
      built.lead === '' &&
      built.body.prefix.startsWith(live.place)
    );
  }

  /** What is left of `live` after what was typed since it was asked. */
  private _rest(live: LiveSuggestion): string | null {
    const texts = live.done ? live.ghostTexts : [live.text];
    const text = texts.find(t => t.startsWith(live.typed) && t.length > live.typed.length);
    return text === undefined ? null : text.slice(live.typed.length);
  }

  private _onReply(
    live: LiveSuggestion,
    reply: { disabled?: string | null },
    sentAt: number
  ): void {
    if (reply.disabled) {
      // The notebook switch is known here (and may be newer than the saved file):
      // only remember the server's own reasons (settings, exam paths).
      if (reply.disabled !== 'notebook') {
        this._disabledPaths.set(live.built.body.path ?? '', Date.now());
      }
      return;
    }
    this._options.status.recordLatency(performance.now() - sentAt);
    this._options.cache.put(
      live.built.key,
      live.place,
      live.built.body.suffix,
      live.texts,
      live.texts.map(text => live.ghostTexts.includes(text))
    );
  }

  private _debounceMs(built: IBuiltRequest): number {
    const config = this._options.settings.current;
    if (!config.adaptiveDebounce) {
      return config.debounceMs;
    }
    const prefix = built.body.prefix;
    return this._pace.debounceMs({
      lineBefore: prefix.slice(prefix.lastIndexOf('\n') + 1),
      lineAfter: built.lineSuffix
    });
  }

  /** Cancel the request under way (a newer keystroke makes it stale). */
  private _stop(): void {
    const live = this._live;
    if (live) {
      this._live = null;
      live.cancel();
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

  private _ticket = 0;
  private _sent = 0;
  private _acceptedAt = 0;
  private _live: LiveSuggestion | null = null;
  private _pace = new TypingPace();
  private _disabledPaths = new Map<string, number>();
}

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}
