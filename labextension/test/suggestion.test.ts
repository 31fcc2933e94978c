import { cleanSuggestion, distinctSuggestions, isMiddleOfLine } from '../src/suggestion';

const endOfLine = { lineSuffix: '' };
const midLine = { lineSuffix: ')]' };

describe('cleanSuggestion', () => {
  it('keeps a block at the end of a line, without trailing blank lines', () => {
    expect(cleanSuggestion('a = 1\nb = 2\n\n', endOfLine)).toBe('a = 1\nb = 2');
  });
  it('keeps one line in the middle of a line', () => {
    expect(isMiddleOfLine(midLine)).toBe(true);
    expect(cleanSuggestion('range(10\nprint(x)', midLine)).toBe('range(10');
  });
  it('normalises line ends and drops whitespace-only text', () => {
    expect(cleanSuggestion('a\r\nb', endOfLine)).toBe('a\nb');
    expect(cleanSuggestion('  \n ', endOfLine)).toBe('');
  });
  it('keeps trailing spaces on the line (the user may want them)', () => {
    expect(cleanSuggestion('x = ', endOfLine)).toBe('x = ');
  });
});

describe('distinctSuggestions', () => {
  it('drops empty and repeated suggestions, in order', () => {
    expect(distinctSuggestions(['a', '', 'a\n', 'b'], endOfLine)).toEqual(['a', 'b']);
  });
});
