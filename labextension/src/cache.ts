/**
 * Recent suggestions, so that typing through ghost text (and the Tab list
 * right after a ghost text) reuses them instead of asking the model again.
 */
import { PromiseDelegate } from '@lumino/coreutils';

/** A finished suggestion for one cursor position. */
interface IEntry {
  key: string;
  prefix: string;
  suffix: string;
  texts: string[];
  /** Whether each text is confident enough for ghost text. */
  confident: boolean[];
  time: number;
}

/** Entries older than this are not reused. */
const MAX_AGE_MS = 60000;
const MAX_ENTRIES = 20;

export class SuggestionCache {
  /** Remember the suggestions given for `prefix|suffix` in `key`. */
  put(
    key: string,
    prefix: string,
    suffix: string,
    texts: string[],
    confident: boolean[] = texts.map(() => true)
  ): void {
    const kept = texts.map((text, i) => i).filter(i => texts[i].trim() !== '');
    if (!kept.length) {
      return;
    }
    this._entries.unshift({
      key,
      prefix,
      suffix,
      texts: kept.map(i => texts[i]),
      confident: kept.map(i => confident[i] ?? true),
      time: Date.now()
    });
    this._entries.length = Math.min(this._entries.length, MAX_ENTRIES);
  }

  /**
   * What remains of a suggestion after the user typed part of it: the
   * cursor moved forward from a cached position by text the suggestion starts with.
   */
  get(key: string, prefix: string, suffix: string, confidentOnly = false): string[] | null {
    const now = Date.now();
    for (const entry of this._entries) {
      if (
        entry.key !== key ||
        entry.suffix !== suffix ||
        now - entry.time > MAX_AGE_MS ||
        !prefix.startsWith(entry.prefix)
      ) {
        continue;
      }
      const typed = prefix.slice(entry.prefix.length);
      const rest = entry.texts
        .filter((text, i) => !confidentOnly || entry.confident[i])
        .filter(text => text.startsWith(typed))
        .map(text => text.slice(typed.length))
        .filter(text => text.trim() !== '');
      if (rest.length) {
        return rest;
      }
    }
    return null;
  }

  /** Announce a request under way for exactly this position. */
  begin(key: string, prefix: string, suffix: string): PromiseDelegate<string[] | null> {
    const delegate = new PromiseDelegate<string[] | null>();
    this._pending = { id: `${key}\u0000${prefix}\u0000${suffix}`, delegate };
    void delegate.promise.then(() => {
      if (this._pending?.delegate === delegate) {
        this._pending = null;
      }
    });
    return delegate;
  }

  /** The request under way for exactly this position, if any. */
  pending(key: string, prefix: string, suffix: string): Promise<string[] | null> | null {
    const id = `${key}\u0000${prefix}\u0000${suffix}`;
    return this._pending?.id === id ? this._pending.delegate.promise : null;
  }

  clear(): void {
    this._entries = [];
  }

  private _entries: IEntry[] = [];
  private _pending: { id: string; delegate: PromiseDelegate<string[] | null> } | null = null;
}
