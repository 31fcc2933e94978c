/**
 * One streamed suggestion, read once from its stream handle and shared by
 * every inline item that shows it (typing through the ghost makes a new
 * item for the same suggestion, with what was typed cut from its start).
 */
import type { IBuiltRequest, ICompletionReply, IStreamHandle } from './tokens';

/** What the owner does with the stream's results. */
export interface ILiveHooks {
  /** A suggestion text as it goes in at the cursor, or '' when not worth showing. */
  clean: (text: string) => string;
  /** Ghost text only for completions at least this confident. */
  minConfidence: () => number;
  onReply: (reply: ICompletionReply, sentAt: number) => void;
  onError: (code: string) => void;
  /** The suggestions shown as ghost text, or null when there are none. */
  onEnd: (ghostTexts: string[] | null) => void;
}

export class LiveSuggestion {
  /** The stream token of the inline item that shows this suggestion now. */
  token = '';
  /** What was typed since the request's place. */
  typed = '';
  /** The first suggestion so far, as shown (with the request's lead). */
  text = '';
  /** Whether the final reply (or the end of the stream) came. */
  done = false;
  /** Every distinct suggestion of the reply (the Tab list may show them all). */
  texts: string[] = [];
  /** The suggestions confident enough for ghost text. */
  ghostTexts: string[] = [];

  constructor(
    readonly handle: IStreamHandle,
    readonly built: IBuiltRequest,
    /** The editor text before the cursor when it was asked (without the lead). */
    readonly place: string,
    private _hooks: ILiveHooks
  ) {
    void this._pump();
  }

  /** Resolves at the next change (at once once done). */
  changed(): Promise<void> {
    if (this.done) {
      return Promise.resolve();
    }
    return new Promise(resolve => this._waiters.push(resolve));
  }

  cancel(): void {
    this.handle.cancel();
  }

  private async _pump(): Promise<void> {
    const sentAt = performance.now();
    for (;;) {
      const message = await this.handle.next();
      if (!message || message.done) {
        const reply = message?.reply;
        if (reply) {
          this._settle(reply);
          this._hooks.onReply(reply, sentAt);
        } else if (message?.error) {
          this._hooks.onError(message.error.code);
        }
        this.done = true;
        this._hooks.onEnd(this.ghostTexts.length ? this.ghostTexts : null);
        this._notify();
        return;
      }
      const text = this._shown(message.text ?? '');
      if (text !== this.text) {
        this.text = text;
        this._notify();
      }
    }
  }

  private _settle(reply: ICompletionReply): void {
    if (reply.disabled) {
      return;
    }
    const min = this._hooks.minConfidence();
    for (const completion of reply.completions) {
      const text = this._shown(completion.text);
      if (!text || this.texts.includes(text)) {
        continue;
      }
      this.texts.push(text);
      // A server without confidence figures: every completion counts as sure.
      if ((completion.confidence ?? 1) >= min) {
        this.ghostTexts.push(text);
      }
    }
  }

  private _shown(text: string): string {
    const clean = this._hooks.clean(text);
    return clean ? this.built.lead + clean : '';
  }

  private _notify(): void {
    const waiters = this._waiters;
    this._waiters = [];
    waiters.forEach(resolve => resolve());
  }

  private _waiters: Array<() => void> = [];
}
