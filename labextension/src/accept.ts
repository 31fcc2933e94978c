/**
 * Partial accept: the next word or the next line of a ghost text (what
 * VS Code's "accept next word" and "accept next line" insert).
 */

/** One word: leading spaces, then a run of word characters or of punctuation. */
const NEXT_WORD = /^(?:\n[ \t]*|[ \t]*(?:[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]+)|[ \t]+)/u;

/** The start of `ghost` up to the end of its next word ('' for ''). */
export function nextWord(ghost: string): string {
  const match = NEXT_WORD.exec(ghost);
  return match ? match[0] : ghost.slice(0, 1);
}

/**
 * The start of `ghost` up to the end of its line; when the ghost starts on
 * the next line (after a newline), that newline and the whole next line.
 */
export function nextLine(ghost: string): string {
  const from = ghost.startsWith('\n') ? 1 : 0;
  const end = ghost.indexOf('\n', from);
  return end === -1 ? ghost : ghost.slice(0, end);
}

/**
 * The newline and indentation that start the line after `line` (the next
 * suggestion after an accept asks for that line): the line's indentation,
 * one level deeper after a colon.
 */
export function nextLineLead(line: string): string {
  const indent = /^[ \t]*/.exec(line)?.[0] ?? '';
  const opens = /:\s*(#.*)?$/.test(line);
  return '\n' + indent + (opens ? '    ' : '');
}
