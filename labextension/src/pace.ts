/**
 * An adaptive debounce, after Tabby's: the quiet time before a request
 * follows the typist's pace (a moving average of the intervals between
 * keystrokes). It is shorter at the end of a line and after a non-word
 * character, where a suggestion is wanted now, and longer inside a word,
 * where the next key is likely on its way (every request costs CPU time on
 * the server, and a superseded one is wasted).
 */

/** Intervals longer than this are pauses, not the typing pace. */
const PAUSE_MS = 1500;
/** Weight of the newest interval in the moving average. */
const SMOOTHING = 0.25;
/** The average before any interval was seen. */
const INITIAL_INTERVAL_MS = 180;
/** Multiples of the average interval. */
const IN_WORD = 1.4;
const AFTER_NON_WORD = 0.5;
const MIDDLE_OF_LINE = 1.5;
/** Bounds of the debounce. */
export const MIN_DEBOUNCE_MS = 15;
export const MAX_DEBOUNCE_MS = 400;

const WORD_CHAR = /[\p{L}\p{N}_]$/u;

/** Where the cursor is, as far as the debounce cares. */
export interface ICursorPlace {
  /** The text of the line before the cursor. */
  lineBefore: string;
  /** The text of the line after the cursor. */
  lineAfter: string;
}

export class TypingPace {
  /** The moving average of the intervals between keystrokes (ms). */
  get averageMs(): number {
    return this._average;
  }

  /** A keystroke at `now` (ms). */
  keystroke(now: number): void {
    if (this._last !== null) {
      const interval = now - this._last;
      if (interval > 0 && interval < PAUSE_MS) {
        this._average += SMOOTHING * (interval - this._average);
      }
    }
    this._last = now;
  }

  /** The quiet time to wait after a keystroke at `place`. */
  debounceMs(place: ICursorPlace): number {
    let factor = WORD_CHAR.test(place.lineBefore) ? IN_WORD : AFTER_NON_WORD;
    if (place.lineAfter.trim() !== '') {
      factor *= MIDDLE_OF_LINE;
    }
    const ms = factor * this._average;
    return Math.round(Math.min(MAX_DEBOUNCE_MS, Math.max(MIN_DEBOUNCE_MS, ms)));
  }

  private _average = INITIAL_INTERVAL_MS;
  private _last: number | null = null;
}
