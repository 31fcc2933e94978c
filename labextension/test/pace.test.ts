import { MAX_DEBOUNCE_MS, MIN_DEBOUNCE_MS, TypingPace } from '../src/pace';

function typed(intervalMs: number, keys = 40): TypingPace {
  const pace = new TypingPace();
  for (let i = 0; i < keys; i++) {
    pace.keystroke(i * intervalMs);
  }
  return pace;
}

const inWord = { lineBefore: 'df.hea', lineAfter: '' };
const afterSpace = { lineBefore: 'x = ', lineAfter: '' };
const afterDot = { lineBefore: 'df.', lineAfter: '' };

describe('TypingPace', () => {
  it('follows the typist: a fast typist waits less than a slow one', () => {
    expect(typed(60).debounceMs(inWord)).toBeLessThan(typed(250).debounceMs(inWord));
    expect(typed(60).averageMs).toBeCloseTo(60, 0);
  });

  it('is shorter after a non-word character than inside a word', () => {
    const pace = typed(150);
    expect(pace.debounceMs(afterSpace)).toBeLessThan(pace.debounceMs(inWord));
    expect(pace.debounceMs(afterDot)).toBeLessThan(pace.debounceMs(inWord));
  });

  it('is shorter at the end of a line than in its middle', () => {
    const pace = typed(150);
    const middle = { lineBefore: 'f(x', lineAfter: ')' };
    expect(pace.debounceMs({ ...middle, lineAfter: '' })).toBeLessThan(pace.debounceMs(middle));
  });

  it('ignores pauses and stays within its bounds', () => {
    const pace = typed(100);
    pace.keystroke(100 * 40 + 60000); // a minute away from the keyboard
    expect(pace.averageMs).toBeCloseTo(100, 0);
    expect(typed(5).debounceMs(afterSpace)).toBe(MIN_DEBOUNCE_MS);
    expect(typed(1400).debounceMs(inWord)).toBe(MAX_DEBOUNCE_MS);
  });
});
