/**
 * Accept part of the ghost text: its next word (Ctrl+Right, as in VS Code)
 * or its next line. The part goes in as if typed, so the rest stays shown
 * (typing through the ghost); Tab still accepts it all. After an accept
 * that leaves nothing, the next suggestion is asked for at once.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { CodeEditor } from '@jupyterlab/codeeditor';
import { Text } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import type { Widget } from '@lumino/widgets';

import { nextLine, nextWord } from './accept';
import type { RequestBuilder } from './context';
import type { CodecompInlineProvider } from './inline';

/** The editor host class while JupyterLab shows ghost text. */
const GHOST_SHOWN = '.jp-mod-inline-completer-active';
export const ACCEPT_WORD = 'codecomp:accept-word';
export const ACCEPT_LINE = 'codecomp:accept-line';
/** JupyterLab's inline completer commands. */
const INLINE_ACCEPT = 'inline-completer:accept';
const INLINE_INVOKE = 'inline-completer:invoke';

interface IEditorWidget extends Widget {
  content: { editor?: CodeEditor.IEditor };
  sessionContext?: NotebookPanel['sessionContext'];
}

export function addAcceptCommands(
  app: JupyterFrontEnd,
  provider: CodecompInlineProvider,
  builder: RequestBuilder,
  trans: TranslationBundle
): void {
  const accept = (take: (ghost: string) => string) => {
    const widget = app.shell.currentWidget as IEditorWidget | null;
    const editor =
      widget instanceof NotebookPanel ? widget.content.activeCell?.editor : widget?.content?.editor;
    if (!widget || !editor) {
      return;
    }
    const text = editor.model.sharedModel.getSource();
    const offset = editor.getOffsetAt(editor.getCursorPosition());
    const built = builder.build(
      { text, offset: Text.jsIndexToCharIndex(offset, text), mimeType: editor.model.mimeType },
      widget,
      widget.sessionContext?.session,
      { mode: 'line', n: 1 }
    );
    const ghost = built ? provider.remainder(built) : null;
    if (!ghost) {
      return;
    }
    const part = take(ghost);
    insertAtCursor(editor, offset, part);
    if (part === ghost) {
      askNext();
    }
  };
  const askNext = () => {
    provider.afterAccept();
    void app.commands.execute(INLINE_INVOKE);
  };
  app.commands.addCommand(ACCEPT_WORD, {
    label: trans.__('Accept the Next Word of the Suggestion'),
    execute: () => accept(nextWord)
  });
  app.commands.addCommand(ACCEPT_LINE, {
    label: trans.__('Accept the Next Line of the Suggestion'),
    execute: () => accept(nextLine)
  });
  // Ctrl+Right is CodeMirror's own key (a word right), which it handles, and marks handled,
  // before JupyterLab's shortcuts see it: while ghost text shows, the shortcuts of these
  // commands (as the user set them) go first.
  document.addEventListener(
    'keydown',
    event => {
      const target = event.target as Element | null;
      if (!target?.closest?.(GHOST_SHOWN)) {
        return;
      }
      const keys = CommandRegistry.keystrokeForKeydownEvent(event);
      const binding = app.commands.keyBindings.find(
        b =>
          (b.command === ACCEPT_WORD || b.command === ACCEPT_LINE) &&
          b.keys.length === 1 &&
          b.keys[0] === keys &&
          !!target.closest(b.selector)
      );
      if (binding) {
        event.preventDefault();
        event.stopPropagation();
        void app.commands.execute(binding.command, binding.args);
      }
    },
    true
  );
  // Tab accepts it all: the next suggestion at once, as Copilot and llama.vscode do.
  app.commands.commandExecuted.connect((_, args) => {
    if (args.id === INLINE_ACCEPT) {
      askNext();
    }
  });
}

/** CodeMirror's view, as JupyterLab's CodeMirror editor exposes it. */
interface IEditorView {
  dispatch(spec: {
    changes: { from: number; insert: string };
    selection: { anchor: number };
  }): void;
}

/**
 * Insert `text` at `offset` and move the cursor after it in one transaction,
 * as JupyterLab's own accept does: the inline completer then sees the text
 * typed at the new cursor (`replaceSelection` moves the cursor afterwards).
 */
function insertAtCursor(editor: CodeEditor.IEditor, offset: number, text: string): void {
  const view = (editor as unknown as { editor?: IEditorView }).editor;
  if (view && typeof view.dispatch === 'function') {
    view.dispatch({
      changes: { from: offset, insert: text },
      selection: { anchor: offset + text.length }
    });
  } else {
    editor.replaceSelection?.(text);
  }
}
