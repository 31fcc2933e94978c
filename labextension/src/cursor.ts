/**
 * The cursor's part of a completion request: the text before and after it,
 * and what is asked for (pure: unit-tested without JupyterLab).
 */
import type { CompletionMode, ICompletionRequest } from './tokens';

/** Bounds that keep a request well under the server's limits. */
const MAX_PREFIX_CHARS = 50000;
const MAX_SUFFIX_CHARS = 20000;

/** What a provider asks for, on top of what the widget says. */
export interface IRequestOptions {
  mode: CompletionMode;
  n: number;
  /** Omitted: the server's default. */
  maxTokens?: number;
  /** Text asked for beyond the cursor (see `IBuiltRequest.lead`). */
  lead?: string;
  /** The notebook cell to ask for (default: the active one). */
  cellIndex?: number;
}

/** The cursor's part of a request: text before and after it, and what is asked. */
export interface ICursorRequest {
  common: Pick<ICompletionRequest, 'prefix' | 'suffix' | 'n' | 'mode' | 'max_new_tokens'>;
  /** The rest of the cursor's line. */
  lineSuffix: string;
  lead: string;
}

/** Split `text` at `cursor` (a JS index) into the request's prefix and suffix. */
export function cursorRequest(
  text: string,
  cursor: number,
  options: IRequestOptions
): ICursorRequest {
  const prefix = text.slice(0, cursor);
  const suffix = text.slice(cursor);
  const newline = suffix.indexOf('\n');
  const lead = options.lead ?? '';
  const common: ICursorRequest['common'] = {
    prefix: (prefix + lead).slice(-MAX_PREFIX_CHARS),
    suffix: suffix.slice(0, MAX_SUFFIX_CHARS),
    n: options.n,
    mode: options.mode
  };
  if (options.maxTokens !== undefined) {
    common.max_new_tokens = options.maxTokens; // omitted: the server's default
  }
  return { common, lineSuffix: newline === -1 ? suffix : suffix.slice(0, newline), lead };
}
