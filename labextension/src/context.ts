/**
 * Turns a completer request (editor text + cursor) and its widget into the
 * server's request body: cells above and below, path, kernel, language.
 */
import type { CompletionHandler } from '@jupyterlab/completer';
import { Text } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';
import type { Session } from '@jupyterlab/services';
import type { Widget } from '@lumino/widgets';

import { cursorRequest, type IRequestOptions } from './cursor';
import { isNotebookEnabled } from './metadata';
export type { IRequestOptions } from './cursor';
import type { IBuiltRequest, ICodecompCell, ICompletionRequest } from './tokens';

/** Bounds that keep a request well under the server's limits. */
const MAX_CELLS_ABOVE = 100;
const MAX_CELLS_BELOW = 20;
const MAX_CELL_CHARS = 20000;

/** Editor MIME types served in files outside notebooks. */
const PYTHON_MIMES = new Set(['text/x-python', 'text/x-ipython']);

/** A document widget as far as this module cares (a file editor). */
interface IDocumentLike extends Widget {
  context: { path: string };
}

export class RequestBuilder {
  /**
   * The request for this widget, or null when it should not be asked:
   * unsupported widget or cell, or a notebook switched off.
   */
  build(
    request: CompletionHandler.IRequest,
    widget: Widget,
    session: Session.ISessionConnection | null | undefined,
    options: IRequestOptions
  ): IBuiltRequest | null {
    const cursor = Text.charIndexToJsIndex(request.offset, request.text);
    const { common, lineSuffix, lead } = cursorRequest(request.text, cursor, options);
    if (widget instanceof NotebookPanel) {
      const notebook = this._notebook(widget, request.text, session, options.cellIndex);
      if (!notebook) {
        return null;
      }
      return {
        body: { ...common, ...notebook.body },
        key: notebook.key,
        lineSuffix,
        cursor,
        lead
      };
    }
    const path = (widget as IDocumentLike).context?.path;
    if (typeof path === 'string' && this._isPython(path, request.mimeType)) {
      const body: ICompletionRequest = {
        ...common,
        cells: [],
        cells_below: [],
        kernel_id: session?.kernel?.id ?? null,
        path,
        language: 'python'
      };
      return { body, key: path, lineSuffix, cursor, lead };
    }
    return null;
  }

  /** Whether the widget is one this extension serves and is switched on. */
  isServed(widget: Widget | null | undefined): boolean {
    if (!widget) {
      return false;
    }
    if (widget instanceof NotebookPanel) {
      return isNotebookEnabled(widget.model);
    }
    const path = (widget as IDocumentLike).context?.path;
    return typeof path === 'string' && path.endsWith('.py');
  }

  private _notebook(
    panel: NotebookPanel,
    text: string,
    session: Session.ISessionConnection | null | undefined,
    cellIndex?: number
  ): { body: Omit<ICompletionRequest, 'prefix' | 'suffix'>; key: string } | null {
    const model = panel.model;
    if (!model || !isNotebookEnabled(model)) {
      return null;
    }
    const cells = panel.content.widgets;
    let index = cellIndex ?? panel.content.activeCellIndex;
    if (cells[index]?.model.sharedModel.getSource() !== text) {
      // The completer's editor is not the active cell's: find it by its text.
      index = cells.findIndex(cell => cell.model.sharedModel.getSource() === text);
    }
    const current = cells[index];
    if (!current || current.model.type !== 'code') {
      return null;
    }
    const toCell = (i: number): ICodecompCell => {
      const cell = cells[i].model;
      return {
        cell_type: cell.type === 'code' || cell.type === 'markdown' ? cell.type : 'raw',
        source: cell.sharedModel.getSource().slice(0, MAX_CELL_CHARS)
      };
    };
    const above: ICodecompCell[] = [];
    for (let i = Math.max(0, index - MAX_CELLS_ABOVE); i < index; i++) {
      above.push(toCell(i));
    }
    const below: ICodecompCell[] = [];
    for (let i = index + 1; i < Math.min(cells.length, index + 1 + MAX_CELLS_BELOW); i++) {
      below.push(toCell(i));
    }
    const path = panel.context.path;
    const kernel = session?.kernel ?? panel.sessionContext.session?.kernel ?? null;
    return {
      body: {
        cells: above,
        cells_below: below,
        kernel_id: kernel?.id ?? null,
        path,
        language: this._language(panel)
      },
      key: `${path}#${current.model.id}`
    };
  }

  private _language(panel: NotebookPanel): string {
    const model = panel.model;
    const info = model?.getMetadata('language_info') as { name?: string } | undefined;
    const spec = model?.getMetadata('kernelspec') as { language?: string } | undefined;
    return (info?.name || spec?.language || 'python').toLowerCase();
  }

  private _isPython(path: string, mimeType?: string): boolean {
    return path.endsWith('.py') || (!!mimeType && PYTHON_MIMES.has(mimeType));
  }
}
