/**
 * The instructor's switch: "Toggle code completion for this notebook" writes
 * notebook metadata `codecomp.enabled` (palette command and toolbar button).
 */
import type { CommandRegistry } from '@lumino/commands';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';
import { CommandToolbarButton } from '@jupyterlab/ui-components';
import type { IDisposable } from '@lumino/disposable';
import { DisposableDelegate } from '@lumino/disposable';

import { codecompIcon } from './icons';
import { isNotebookEnabled, setNotebookEnabled } from './metadata';

export const TOGGLE_COMMAND = 'codecomp:toggle-notebook';

/** Add the command; returns it so that the palette and toolbar can use it. */
export function addToggleCommand(
  commands: CommandRegistry,
  tracker: INotebookTracker,
  trans: TranslationBundle,
  onToggled: () => void
): string {
  const current = (): NotebookPanel | null => tracker.currentWidget;
  commands.addCommand(TOGGLE_COMMAND, {
    label: trans.__('Toggle code completion for this notebook'),
    caption: trans.__(
      "Turn the local model's completions on or off for this notebook (saved in its metadata)."
    ),
    icon: args => (args.toolbar ? codecompIcon : undefined),
    isEnabled: () => !!current()?.model,
    isToggled: () => {
      const panel = current();
      return !!panel?.model && isNotebookEnabled(panel.model);
    },
    execute: () => {
      const model = current()?.model;
      if (!model) {
        return;
      }
      setNotebookEnabled(model, !isNotebookEnabled(model));
      onToggled();
      // Saved at once: the server reads the switch from the file.
      void current()
        ?.context.save()
        .catch(() => undefined);
    },
    describedBy: { args: { type: 'object', properties: {} } }
  });
  // Keep the toggled state of menus and buttons in step with the notebook.
  const refresh = () => commands.notifyCommandChanged(TOGGLE_COMMAND);
  tracker.currentChanged.connect(refresh);
  tracker.widgetAdded.connect((_, panel) => {
    panel.context.ready
      .then(() => panel.model?.metadataChanged.connect(refresh))
      .catch(() => undefined);
  });
  return TOGGLE_COMMAND;
}

/** The notebook toolbar button (a document widget extension). */
export class ToggleButtonExtension {
  constructor(private _commands: CommandRegistry) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new CommandToolbarButton({
      commands: this._commands,
      id: TOGGLE_COMMAND,
      args: { toolbar: true },
      label: ''
    });
    button.addClass('jp-codecomp-ToggleButton');
    if (!panel.toolbar.insertAfter('cellType', 'codecomp-toggle', button)) {
      panel.toolbar.insertItem(10, 'codecomp-toggle', button);
    }
    return new DisposableDelegate(() => button.dispose());
  }
}
