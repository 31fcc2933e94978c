/**
 * Last checks on a model suggestion before it is shown. The server already
 * stops lines and blocks and never repeats the suffix; the editor side adds
 * what only it knows: a suggestion in the middle of a line stays on that line
 * (it is inserted before the rest of the line, never over it).
 */

/** Where the cursor is. */
export interface ISuggestionPlace {
  /** The text after the cursor up to the end of its line. */
  lineSuffix: string;
}

/** Whether the cursor has code after it on its line. */
export function isMiddleOfLine(place: ISuggestionPlace): boolean {
  return place.lineSuffix.trim() !== '';
}

/** The text to show and insert, or '' when there is nothing worth showing. */
export function cleanSuggestion(text: string, place: ISuggestionPlace): string {
  let result = text.replace(/\r\n?/g, '\n');
  if (isMiddleOfLine(place)) {
    const newline = result.indexOf('\n');
    if (newline !== -1) {
      result = result.slice(0, newline);
    }
  }
  result = result.replace(/\s+$/, match => (match.includes('\n') ? '' : match));
  return result.trim() === '' ? '' : result;
}

/** Distinct non-empty suggestions, in order. */
export function distinctSuggestions(texts: string[], place: ISuggestionPlace): string[] {
  const seen = new Set<string>();
  const result: string[] = [];
  for (const text of texts) {
    const clean = cleanSuggestion(text, place);
    if (clean && !seen.has(clean)) {
      seen.add(clean);
      result.push(clean);
    }
  }
  return result;
}
