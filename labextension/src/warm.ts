/**
 * Prefill ahead: when a notebook opens, a cell runs, or the cursor enters
 * a cell, ask the server to prefill that cell's prompt (issue 17), so that
 * the first keystroke there finds the model's KV cache ready. The server
 * runs a warm request only while no completion waits, and any completion
 * pre-empts it; a newer warm for the notebook replaces the older.
 */
import { Text } from '@jupyterlab/coreutils';
import { NotebookActions, type INotebookTracker, type NotebookPanel } from '@jupyterlab/notebook';

import type { RequestBuilder } from './context';
import { isNotebookEnabled } from './metadata';
import { requestLimits, type SettingsModel } from './settings';
import { isMiddleOfLine } from './suggestion';
import type { ICodecompStatus } from './tokens';
import type { CodecompTransport } from './transport';

/** Wait this long after the event: moving through cells sends one warm, not one per cell. */
const WARM_DELAY_MS = 300;

export interface IWarmerOptions {
  tracker: INotebookTracker;
  transport: CodecompTransport;
  status: ICodecompStatus;
  settings: SettingsModel;
  builder: RequestBuilder;
}

export class PromptWarmer {
  constructor(private _options: IWarmerOptions) {
    const { tracker, status } = _options;
    // A notebook opens: its last code cell, where a student goes on writing.
    tracker.widgetAdded.connect((_, panel) => {
      panel.context.ready
        .then(() => this.schedule(panel, lastCodeCell(panel)))
        .catch(() => undefined);
    });
    tracker.activeCellChanged.connect(() => {
      const panel = tracker.currentWidget;
      if (panel) {
        this.schedule(panel);
      }
    });
    // A cell ran: the kernel's variables changed, and the cursor is in the next cell.
    NotebookActions.executed.connect((_, { notebook }) => {
      const panel = tracker.find(widget => widget.content === notebook);
      if (panel) {
        this.schedule(panel);
      }
    });
    // The model became ready after the notebook opened.
    status.changed.connect(() => {
      const panel = tracker.currentWidget;
      if (status.ready && !this._wasReady && panel) {
        this.schedule(panel);
      }
      this._wasReady = status.ready;
    });
  }

  /** Warm the prompt of a cell (default: the active one) after a short delay. */
  schedule(panel: NotebookPanel, cellIndex?: number): void {
    clearTimeout(this._timers.get(panel));
    const timer = setTimeout(() => {
      this._timers.delete(panel);
      void this._send(panel, cellIndex);
    }, WARM_DELAY_MS);
    this._timers.set(panel, timer);
  }

  private async _send(panel: NotebookPanel, cellIndex?: number): Promise<void> {
    const { status, settings, builder, transport } = this._options;
    const config = settings.current;
    if (!config.enabled || !config.warm || !status.ready || panel.isDisposed) {
      return;
    }
    if (!panel.model || !isNotebookEnabled(panel.model)) {
      return;
    }
    const index = cellIndex ?? panel.content.activeCellIndex;
    const cell = panel.content.widgets[index];
    if (!cell || cell.model.type !== 'code') {
      return;
    }
    const text = cell.model.sharedModel.getSource();
    const editor = index === panel.content.activeCellIndex ? cell.editor : null;
    const offset = editor ? editor.getOffsetAt(editor.getCursorPosition()) : text.length;
    const limits = requestLimits(config, status.server, { n: 1, maxTokens: null });
    const built = builder.build(
      {
        text,
        offset: Text.jsIndexToCharIndex(offset, text),
        mimeType: cell.model.mimeType
      },
      panel,
      panel.sessionContext.session,
      { mode: config.mode, n: 1, maxTokens: limits.maxTokens, cellIndex: index }
    );
    if (!built) {
      return;
    }
    if (isMiddleOfLine(built)) {
      built.body.mode = 'line';
    }
    await transport.warm(built.body);
  }

  private _wasReady = false;
  private _timers = new Map<NotebookPanel, ReturnType<typeof setTimeout>>();
}

function lastCodeCell(panel: NotebookPanel): number {
  const cells = panel.content.widgets;
  for (let i = cells.length - 1; i >= 0; i--) {
    if (cells[i].model.type === 'code') {
      return i;
    }
  }
  return -1;
}
