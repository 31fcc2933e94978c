import { nextLine, nextLineLead, nextWord } from '../src/accept';

describe('nextWord', () => {
  it.each([
    ['ad(10)', 'ad'],
    ['(10)', '('],
    [' + 1', ' +'],
    ['compute(alpha, beta)', 'compute'],
    ['  return x', '  return'],
    ['\n    return x', '\n    '],
    ['.mean()', '.'],
    ['x', 'x'],
    ['', '']
  ])('%j -> %j', (ghost, word) => {
    expect(nextWord(ghost)).toBe(word);
  });

  it('repeated, it rebuilds the ghost text', () => {
    let ghost = 'total = compute(alpha, beta)\nprint(total)';
    let built = '';
    while (ghost) {
      const word = nextWord(ghost);
      expect(word.length).toBeGreaterThan(0);
      built += word;
      ghost = ghost.slice(word.length);
    }
    expect(built).toBe('total = compute(alpha, beta)\nprint(total)');
  });
});

describe('nextLine', () => {
  it('takes the rest of the current line, without its newline', () => {
    expect(nextLine('compute(a)\nprint(a)')).toBe('compute(a)');
  });
  it('takes the newline and the next line when the ghost starts on it', () => {
    expect(nextLine('\nprint(a)\nmore')).toBe('\nprint(a)');
  });
  it('takes a last line whole', () => {
    expect(nextLine('print(a)')).toBe('print(a)');
  });
});

describe('nextLineLead', () => {
  it('keeps the indentation, one level deeper after a colon', () => {
    expect(nextLineLead('    x = 1')).toBe('\n    ');
    expect(nextLineLead('for i in range(3):')).toBe('\n    ');
    expect(nextLineLead('  if x:  # note')).toBe('\n      ');
  });
});
