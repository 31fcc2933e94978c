/**
 * Tab list items: the model's rest-of-line suggestions (and alternatives)
 * beside the kernel's items. Fast to fail: no items unless the model is
 * ready and answers within the completer's time budget; the kernel's items
 * never wait for more than that.
 */
import type {
  CompletionHandler,
  ICompletionContext,
  ICompletionProvider
} from '@jupyterlab/completer';
import { CompletionTriggerKind } from '@jupyterlab/completer';
import { Text } from '@jupyterlab/coreutils';

import type { SuggestionCache } from './cache';
import type { RequestBuilder } from './context';
import { codecompIcon } from './icons';
import { requestLimits, type SettingsModel } from './settings';
import { distinctSuggestions } from './suggestion';
import type { IBuiltRequest, ICodecompStatus } from './tokens';
import type { CodecompTransport } from './transport';

/** The provider's id (also in the completer's `availableProviders` ranks). */
export const TAB_PROVIDER_ID = 'CompletionProvider:codecomp';

/** The item type shown at the right of the Tab list. */
export const ITEM_TYPE = 'codecomp';

/**
 * JupyterLab drops a provider's answer after its `providerTimeout` (1 s by
 * default) and shows the list only when every provider answered: answer
 * this much earlier.
 */
const DEADLINE_MARGIN_MS = 150;

/** A Tab request that missed the list still runs this long to fill the cache. */
const LATE_REPLY_CAP_MS = 10000;

/** Tab items are one line: fewer tokens than ghost text need. */
const TAB_MAX_TOKENS = 32;

/** Longest label shown in the list (the inserted text is never cut). */
const MAX_LABEL_CHARS = 80;

/** The identifier being typed just before the cursor. */
const TOKEN_BEFORE = /[\p{L}\p{N}_]*$/u;

export interface ITabProviderOptions {
  transport: CodecompTransport;
  status: ICodecompStatus;
  settings: SettingsModel;
  builder: RequestBuilder;
  cache: SuggestionCache;
  /** JupyterLab's `providerTimeout` (ms), read live from its settings. */
  providerTimeout: () => number;
}

export class CodecompTabProvider implements ICompletionProvider {
  readonly identifier = TAB_PROVIDER_ID;
  /**
   * Kernel items (550) come first, then the model's, then the words of the
   * document (500); with a typed prefix the list is sorted by match anyway.
   */
  readonly rank = 520;
  readonly renderer = null;

  constructor(private _options: ITabProviderOptions) {}

  async isApplicable(context: ICompletionContext): Promise<boolean> {
    const { settings, status, builder } = this._options;
    const config = settings.current;
    return config.enabled && config.tabItems && status.ready && builder.isServed(context.widget);
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: ICompletionContext,
    trigger?: CompletionTriggerKind
  ): Promise<CompletionHandler.ICompletionItemsReply> {
    const empty = { start: request.offset, end: request.offset, items: [] };
    try {
      const built = this._build(request, context);
      if (!built) {
        return empty;
      }
      const texts = await this._suggestions(built, trigger);
      if (!texts?.length) {
        return empty;
      }
      return this._reply(request, built, texts);
    } catch {
      return empty;
    }
  }

  private _build(
    request: CompletionHandler.IRequest,
    context: ICompletionContext
  ): IBuiltRequest | null {
    const { settings, builder, status } = this._options;
    const config = settings.current;
    if (!context.widget) {
      return null;
    }
    const limits = requestLimits(config, status.server, {
      n: config.alternatives,
      maxTokens: Math.min(config.maxTokens ?? TAB_MAX_TOKENS, TAB_MAX_TOKENS)
    });
    return builder.build(request, context.widget, context.session, {
      mode: 'line',
      n: limits.n,
      maxTokens: limits.maxTokens
    });
  }

  /** From the cache, from the ghost text request under way, or a new request. */
  private async _suggestions(
    built: IBuiltRequest,
    trigger?: CompletionTriggerKind
  ): Promise<string[] | null> {
    const { cache, transport, status } = this._options;
    const { key, body } = built;
    const cached = cache.get(key, body.prefix, body.suffix);
    if (cached) {
      return cached;
    }
    if (trigger === CompletionTriggerKind.TriggerCharacter) {
      // Continuous hinting asks on every keystroke: never start the model for it.
      return null;
    }
    const deadline = Math.max(100, this._options.providerTimeout() - DEADLINE_MARGIN_MS);
    const started = performance.now();
    const pending = cache.pending(key, body.prefix, body.suffix);
    if (pending) {
      const texts = await withDeadline(pending, deadline);
      if (texts?.length) {
        return texts;
      }
    }
    const left = deadline - (performance.now() - started);
    if (left < 100) {
      return cached;
    }
    // Past the deadline the list shows without these items, but the request goes on (up to
    // a cap) and fills the cache: the next Tab at this place is instant.
    const reply = transport
      .complete(body, { key: `${key}#tab`, timeoutMs: LATE_REPLY_CAP_MS })
      .then(reply => {
        if (reply.disabled) {
          return null;
        }
        const texts = distinctSuggestions(
          reply.completions.map(completion => completion.text),
          built
        );
        cache.put(key, body.prefix, body.suffix, texts);
        return texts;
      })
      .catch(error => {
        status.reportFailure((error as { code?: string }).code ?? '');
        return null;
      });
    const texts = await withDeadline(reply, left);
    return texts?.length ? texts : cached;
  }

  private _reply(
    request: CompletionHandler.IRequest,
    built: IBuiltRequest,
    texts: string[]
  ): CompletionHandler.ICompletionItemsReply {
    const word = built.body.prefix.match(TOKEN_BEFORE)?.[0] ?? '';
    const end = request.offset;
    const start = end - Text.jsIndexToCharIndex(word.length, word);
    const items: CompletionHandler.ICompletionItem[] = [];
    for (const text of texts) {
      const line = text.split('\n')[0];
      if (!line.trim()) {
        continue;
      }
      const insertText = word + line;
      const label =
        insertText.length > MAX_LABEL_CHARS
          ? insertText.slice(0, MAX_LABEL_CHARS - 1) + '\u2026'
          : insertText;
      items.push({
        label,
        insertText,
        type: ITEM_TYPE,
        icon: codecompIcon,
        documentation: text.includes('\n') ? text : undefined
      });
    }
    return { start, end, items };
  }
}

/** The promise's value, or null past `ms`. */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  return Promise.race([promise, new Promise<null>(resolve => setTimeout(() => resolve(null), ms))]);
}
