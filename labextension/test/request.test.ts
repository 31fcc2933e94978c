import { cursorRequest } from '../src/cursor';

describe('cursorRequest', () => {
  it('splits the cell at the cursor and names the rest of its line', () => {
    const built = cursorRequest('x = f(a, )\nprint(x)', 9, { mode: 'line', n: 1 });
    expect(built.common.prefix).toBe('x = f(a, ');
    expect(built.common.suffix).toBe(')\nprint(x)');
    expect(built.lineSuffix).toBe(')');
    expect('max_new_tokens' in built.common).toBe(false); // the server's default
  });

  it('asks beyond the cursor with a lead (the next line after an accept)', () => {
    const built = cursorRequest('for i in x:', 11, {
      mode: 'line',
      n: 1,
      maxTokens: 48,
      lead: '\n    '
    });
    expect(built.common.prefix).toBe('for i in x:\n    ');
    expect(built.common.max_new_tokens).toBe(48);
    expect(built.lead).toBe('\n    ');
  });
});
